import { describe, expect, it } from 'vitest';
import { quoteNftErrors } from '../../../src/netfilter/nft.js';

describe('quoteNftErrors', () => {
  const input = ['add table ip t', 'add chain ip t c', 'add rule ip t c jump nowhere', ''].join('\n');

  it('quotes the line and columns nft names, which it cannot do for a pipe', () => {
    const stderr = '/dev/fd/0:3:22-28: Error: Could not process rule: No such file or directory\n';
    expect(quoteNftErrors(stderr, input)).toEqual(['line 3: Error: Could not process rule: No such file or directory: add rule ip t c jump [nowhere]']);
  });

  it('replaces the quote and caret nft prints for stdin with its own', () => {
    const stderr = ['/dev/stdin:2:1-3: Error: syntax error, unexpected junk', 'add chain ip t c', '^^^', ''].join('\n');
    expect(quoteNftErrors(stderr, input)).toEqual(['line 2: Error: syntax error, unexpected junk: [add] chain ip t c']);
  });

  it('clips a long line around the named columns', () => {
    const items = Array.from({ length: 2000 }, (_, i) => `10.96.${i >> 8}.${i & 255} . tcp . 80 : goto pick-tcp-2`).join(', ');
    const long = `add element ip t m { ${items}, 10.96.99.1 . tcp . 80 : goto nowhere }`;
    const col = long.indexOf('nowhere') + 1;
    const [msg] = quoteNftErrors(`/dev/fd/0:1:${col}-${col + 6}: Error: Could not process rule: No such file or directory`, long);
    expect(msg).toContain('[nowhere] }');
    expect(msg!.startsWith('line 1: Error: Could not process rule')).toBe(true);
    expect(msg!.length).toBeLessThan(250);
  });

  it('keeps a location past the end of the input, and unlocated output, as nft wrote them', () => {
    expect(quoteNftErrors('/dev/fd/0:9:1-2: Error: x', input)).toEqual(['/dev/fd/0:9:1-2: Error: x']);
    expect(quoteNftErrors('nft: command not found\n', input)).toEqual(['nft: command not found']);
  });
});
