// Showing where in a filter expression the server found an error.

export interface FilterErrorMark {
  /** Text before the marked character. */
  before: string;
  /** The marked character ("" when the error is at the end of the input). */
  at: string;
  /** Text after it. */
  after: string;
  /** 1-based line and column of the position, for the message. */
  line: number;
  column: number;
  /** The line holding the position, and a caret under it ("    ^"). */
  lineText: string;
  caret: string;
}

/** The position a problem gives, or the one its message names ("at position 12"). */
export function errorPosition(
  position: number | null | undefined,
  message: string | undefined,
): number | null {
  if (typeof position === 'number' && Number.isInteger(position) && position >= 0) {
    return position;
  }
  const m = /\bat position (\d+)\b/.exec(message ?? '');
  return m ? Number(m[1]) : null;
}

/**
 * The UTF-16 index of the `codePoint`-th code point: the server counts positions in
 * Python str indices (code points), JavaScript strings in UTF-16 units.
 */
export function codePointIndex(text: string, codePoint: number): number {
  let index = 0;
  for (let cp = 0; cp < codePoint && index < text.length; cp++) {
    const c = text.charCodeAt(index);
    index += c >= 0xd800 && c <= 0xdbff && index + 1 < text.length ? 2 : 1;
  }
  return index;
}

/**
 * Splits `text` at the 0-based character `position` (a code point index, clamped to the
 * text) so the UI can mark it.
 */
export function markFilterError(text: string, position: number): FilterErrorMark {
  const pos = codePointIndex(text, Math.max(Math.trunc(position), 0));
  const before = text.slice(0, pos);
  const atEnd = pos >= text.length;
  const width = !atEnd && text.codePointAt(pos)! > 0xffff ? 2 : 1;
  const at = atEnd ? '' : text.slice(pos, pos + width);
  const after = atEnd ? '' : text.slice(pos + width);
  const lineStart = before.lastIndexOf('\n') + 1;
  const lineEndRaw = text.indexOf('\n', pos);
  const lineEnd = lineEndRaw === -1 ? text.length : lineEndRaw;
  const line = before.split('\n').length;
  const column = Array.from(text.slice(lineStart, pos)).length + 1;
  const lineText = text.slice(lineStart, lineEnd);
  // Tabs keep their width in the caret line so the caret sits under the character.
  const lead = Array.from(text.slice(lineStart, pos), (c) => (c === '\t' ? '\t' : ' ')).join('');
  return { before, at, after, line, column, lineText, caret: `${lead}^` };
}
