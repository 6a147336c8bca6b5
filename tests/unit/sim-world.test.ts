import { describe, expect, it } from 'vitest';
import { simSearch, simVisit } from '../../sim/tools.js';
import { puzzleFor, sampleQuestions } from '../../sim/world.js';

describe('synthetic world', () => {
  it('derives the same puzzle from the same question, ignoring directives', () => {
    const q = 'What is the meaning of the old harbour records?';
    const a = puzzleFor(q);
    const b = puzzleFor(`${q} [sim:min-turns=3] [sim:obs-bytes=100]`);
    expect(b.answer).toBe(a.answer);
    expect(b.start).toEqual(a.start);
    expect([...b.pages.keys()]).toEqual([...a.pages.keys()]);
    expect(b.difficulty).toBe(a.difficulty);
    // A mistyped directive does nothing: it does not change the question, and so the answer.
    for (const typo of [
      '[sim:garbage@1,2]',
      '[sim:difficulty=-0.5]',
      '[SIM:garbage@1]',
      '[sim:min-turns = 5]',
    ])
      expect(puzzleFor(`${q} ${typo}`).answer, typo).toBe(a.answer);
  });

  it('builds multi-hop puzzles with correct, misleading and irrelevant pages', () => {
    for (const { question } of sampleQuestions(30, 3)) {
      const p = puzzleFor(question);
      expect(p.hops.length).toBeGreaterThanOrEqual(2);
      expect(p.hops.length).toBeLessThanOrEqual(4);
      expect(p.difficulty).toBeGreaterThanOrEqual(0);
      expect(p.difficulty).toBeLessThanOrEqual(1);
      expect(p.hops[0]!.from.name).toBe(p.start.name);
      expect(p.hops[p.hops.length - 1]!.to.name).toBe(p.answer);
      for (const hop of p.hops) {
        const kinds = hop.results.map((r) => r.kind);
        expect(kinds.filter((k) => k === 'correct')).toHaveLength(1);
        expect(kinds.filter((k) => k !== 'correct').length).toBeGreaterThanOrEqual(2);
        expect(kinds.filter((k) => k !== 'correct').length).toBeLessThanOrEqual(3);
        expect(kinds).toContain('misleading');
        expect(kinds).toContain('irrelevant');
        const correct = hop.results.find((r) => r.kind === 'correct')!;
        expect(correct.facts[0]).toEqual({
          subject: hop.from.name,
          relation: hop.relation.label,
          object: hop.to.name,
        });
        for (const m of hop.results.filter((r) => r.kind === 'misleading')) {
          expect(m.facts[0]!.object).not.toBe(hop.to.name);
        }
      }
      expect(p.wrongAnswers.length).toBeGreaterThan(0);
      expect(p.wrongAnswers).not.toContain(p.answer);
    }
  });

  it('samples natural questions whose puzzle answer is the given answer', () => {
    const qs = sampleQuestions(50, 42);
    expect(qs).toHaveLength(50);
    expect(new Set(qs.map((q) => q.question)).size).toBe(50);
    for (const { question, answer } of qs) {
      expect(question).toMatch(/^(Who|Which [a-z]+) is the .+\?$/);
      const p = puzzleFor(question);
      expect(p.parsed).toBe(true);
      expect(p.answer).toBe(answer);
      expect(question).toContain(p.start.display);
    }
    expect(sampleQuestions(5, 42)).toEqual(qs.slice(0, 5));
    expect(sampleQuestions(5, 43)).not.toEqual(qs.slice(0, 5));
  });

  it('gives any question a world', () => {
    const p = puzzleFor('How tall is the tallest tree in the valley?');
    expect(p.parsed).toBe(false);
    expect(p.answer.length).toBeGreaterThan(0);
    expect(p.hops.length).toBeGreaterThanOrEqual(2);
  });
});

describe('synthetic tools', () => {
  const { question } = sampleQuestions(1, 9)[0]!;
  const p = puzzleFor(question);
  const hop = p.hops[0]!;

  it('search lists the pool of the entity named in the query, Tongyi style', () => {
    const out = simSearch(question, `"${hop.from.name}" ${hop.relation.label}`);
    expect(out).toMatch(/^A Google search for '.+' found \d+ results:\n\n## Web Results\n1\. \[/);
    for (const r of hop.results) expect(out).toContain(r.url);
    const two = simSearch(question, [hop.from.name, 'unrelated words']);
    expect(two.split('\n=======\n')).toHaveLength(2);
    expect(two).toContain('sim://kb/misc/');
  });

  it('visit shows the facts of a page and reports unknown pages', () => {
    const correct = hop.results.find((r) => r.kind === 'correct')!;
    const page = simVisit(question, correct.url, 'find it');
    expect(page).toContain(`The useful information in ${correct.url} for user goal find it as follows`);
    expect(page).toContain(`Fact: ${hop.from.name} | ${hop.relation.label} | ${hop.to.name}.`);
    const missing = simVisit(question, 'sim://kb/does-not-exist');
    expect(missing).toContain('Page not found');
    expect(simVisit(question, [correct.url, 'sim://kb/nope']).split('\n=======\n')).toHaveLength(2);
  });

  it('pads pages to the requested size with [sim:obs-bytes=N]', () => {
    const url = hop.results[0]!.url;
    const big = simVisit(`${question} [sim:obs-bytes=200000]`, url, 'g');
    expect(Buffer.byteLength(big)).toBe(200_000);
    expect(big).toContain('Fact: ');
    expect(big.indexOf('Fact: ')).toBeLessThan(2000);
  });
});
