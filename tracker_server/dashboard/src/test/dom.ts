// What jsdom lacks and the charts need: ResizeObserver (reporting a fixed width).
export function installResizeObserver(width = 600): void {
  class FixedResizeObserver {
    private readonly callback: ResizeObserverCallback;
    constructor(callback: ResizeObserverCallback) {
      this.callback = callback;
    }
    observe(target: Element): void {
      const entry = { target, contentRect: { width, height: 200 } } as unknown as ResizeObserverEntry;
      this.callback([entry], this as unknown as ResizeObserver);
    }
    unobserve(): void {}
    disconnect(): void {}
  }
  (globalThis as { ResizeObserver?: unknown }).ResizeObserver = FixedResizeObserver;
}
