import { describe, expect, it } from 'vitest';
import { codePointIndex, errorPosition, markFilterError } from './filterError';

describe('markFilterError', () => {
  it('marks the character at the position', () => {
    const m = markFilterError('params.lr > and x', 12);
    expect(m.before).toBe('params.lr > ');
    expect(m.at).toBe('a');
    expect(m.after).toBe('nd x');
    expect(m.line).toBe(1);
    expect(m.column).toBe(13);
    expect(m.caret).toBe(' '.repeat(12) + '^');
  });

  it('marks the end of the input with an empty character', () => {
    const m = markFilterError('params.lr <', 11);
    expect(m.before).toBe('params.lr <');
    expect(m.at).toBe('');
    expect(m.after).toBe('');
    expect(m.column).toBe(12);
  });

  it('clamps positions outside the text', () => {
    expect(markFilterError('abc', 99).before).toBe('abc');
    expect(markFilterError('abc', -5).at).toBe('a');
  });

  it('finds line and column in multi-line filters', () => {
    const m = markFilterError('a = 1\nand\tb ! 2', 12);
    expect(m.line).toBe(2);
    expect(m.column).toBe(7);
    expect(m.lineText).toBe('and\tb ! 2');
    expect(m.at).toBe('!');
    expect(m.caret).toBe('   \t  ^');
  });

  it('counts positions in code points, as the server does', () => {
    // "🙂" is one code point (two UTF-16 units).
    const text = 'name = "🙂" oops';
    const m = markFilterError(text, 11);
    expect(m.at).toBe('o');
    expect(codePointIndex(text, 8)).toBe(8);
    expect(codePointIndex(text, 9)).toBe(10);
    expect(markFilterError(text, 8).at).toBe('🙂');
  });
});

describe('errorPosition', () => {
  it('prefers the position field', () => {
    expect(errorPosition(4, 'at position 9')).toBe(4);
  });

  it('falls back to the position named in the message', () => {
    expect(errorPosition(undefined, 'expected a string or a number, found end of input at position 12')).toBe(12);
    expect(errorPosition(null, 'no position here')).toBeNull();
    expect(errorPosition(-1, undefined)).toBeNull();
  });
});
