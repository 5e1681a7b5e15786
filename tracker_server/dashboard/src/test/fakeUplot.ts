// A stand-in for uPlot (jsdom has no canvas) that records what the chart asked it to do.
import type uPlot from 'uplot';

export class FakePlot {
  static instances: FakePlot[] = [];
  opts: uPlot.Options;
  data: uPlot.AlignedData;
  width: number;
  scales: Record<string, { min: number; max: number }> = {};
  select = { left: 0, top: 0, width: 0, height: 0 };
  cursor: { idx: number | null } = { idx: null };
  over: HTMLDivElement;
  destroyed = false;
  setDataCalls = 0;

  constructor(opts: uPlot.Options, data: uPlot.AlignedData, target: HTMLElement) {
    this.opts = opts;
    this.data = data;
    this.width = opts.width;
    this.over = document.createElement('div');
    target.appendChild(this.over);
    FakePlot.instances.push(this);
    this.fire('draw');
  }

  private fire(name: keyof uPlot.Hooks.Arrays): void {
    const hooks = (this.opts.hooks?.[name] ?? []) as ((u: unknown) => void)[];
    for (const h of hooks) h(this);
  }

  setData(data: uPlot.AlignedData): void {
    this.data = data;
    this.setDataCalls++;
    this.fire('draw');
  }

  setScale(key: string, range: { min: number; max: number }): void {
    this.scales[key] = range;
  }

  setSize(size: { width: number }): void {
    this.width = size.width;
  }

  /** The x axis maps pixels 1:1 to x values in the fake. */
  posToVal(pos: number): number {
    return pos;
  }

  setSelect(s: { left: number; top: number; width: number; height: number }, fire = true): void {
    this.select = s;
    if (fire) this.fire('setSelect');
  }

  drag(left: number, width: number): void {
    this.setSelect({ left, top: 0, width, height: 10 });
  }

  destroy(): void {
    this.destroyed = true;
    this.over.remove();
  }
}
