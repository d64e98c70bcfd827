// Names are bytes (core/names.ts): every byte string maps to a string and back unchanged,
// two byte strings never to one string, valid UTF-8 to the string it spells, and the
// length limit counts bytes. Before, names were decoded with replacement characters, and
// 'caf\xe9' and 'caf\xe8' (Latin-1, as in an old tarball) became one file.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fsName, nameBytes, nameFromBytes, nameToBytes, nameTooLong } from '../src/core/names.js';

/** A small seeded generator (mulberry32), so that a failure can be run again. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('names: bytes to strings and back, losslessly', () => {
  it('maps 50,000 random byte strings to strings and back unchanged, and distinct ones apart', () => {
    const seed = Number(process.env.CACHEFS_NAMES_SEED ?? 13);
    const r = rng(seed);
    const seen = new Map<string, string>();
    // Bytes biased toward what breaks decoders: lead bytes, continuation bytes, escapes' UTF-8.
    const pick = [0x41, 0x2e, 0x80, 0xbf, 0xc0, 0xc2, 0xc3, 0xa9, 0xe0, 0xed, 0xee, 0xbe, 0xef, 0xbf, 0xbd, 0xf0, 0xf4, 0xf5, 0xff, 0x9f];
    for (let n = 0; n < 50_000; n++) {
      const len = 1 + Math.floor(r() * 12);
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++) b[i] = r() < 0.6 ? pick[Math.floor(r() * pick.length)]! : 1 + Math.floor(r() * 255);
      const s = nameFromBytes(b);
      assert.deepEqual(nameToBytes(s), b, `seed ${seed}, case ${n}: ${b.toString('hex')} came back as ${nameToBytes(s).toString('hex')}`);
      assert.equal(nameBytes(s), len);
      const other = seen.get(s);
      assert.ok(other === undefined || other === b.toString('hex'), `${other} and ${b.toString('hex')} gave one string`);
      seen.set(s, b.toString('hex'));
      assert.equal(Buffer.from(s, 'utf8').toString('utf8'), s, 'the string is valid Unicode (SQLite and JSON keep it)');
    }
  });

  it('decodes valid UTF-8 as itself, and only what is not UTF-8 as escapes', () => {
    for (const s of ['plain.txt', 'café', '日本語', 'emoji-🎉', 'fffd-\ufffd', 'nl\nname']) {
      assert.equal(nameFromBytes(Buffer.from(s, 'utf8')), s);
      assert.equal(fsName(s), s, 'a string Node encodes right goes to fs as itself');
    }
    const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9]);
    assert.equal(nameFromBytes(latin1), 'caf\uefe9');
    assert.notEqual(nameFromBytes(Buffer.from([0x63, 0x61, 0x66, 0xe8])), nameFromBytes(latin1));
    assert.deepEqual(fsName('caf\uefe9'), latin1, 'to fs as its bytes');
    // A name really holding a character of the escape range: three escaped bytes, not one byte.
    const real = Buffer.from('\uef80', 'utf8');
    assert.equal(nameFromBytes(real), '\uefee\uefbe\uef80');
    assert.deepEqual(nameToBytes(nameFromBytes(real)), real);
    // Overlong '/', a UTF-16 surrogate, a lone continuation byte: escaped byte by byte.
    for (const bad of [[0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x80], [0xf5, 0x80, 0x80, 0x80]]) {
      const s = nameFromBytes(Buffer.from(bad));
      assert.equal(s.length, bad.length, Buffer.from(bad).toString('hex'));
      assert.deepEqual(nameToBytes(s), Buffer.from(bad));
    }
  });

  it('counts NAME_MAX in bytes: 255 Latin-1 bytes fit, 256 do not', () => {
    assert.equal(nameTooLong(nameFromBytes(Buffer.alloc(255, 0xe9))), false);
    assert.equal(nameTooLong(nameFromBytes(Buffer.alloc(256, 0xe9))), true);
    assert.equal(nameTooLong('é'.repeat(128)), true);
  });
});
