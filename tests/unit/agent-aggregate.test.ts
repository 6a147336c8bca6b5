import { describe, expect, it } from 'vitest';
import {
  aggregate,
  confidenceWeight,
  exactMatch,
  normalizeAnswer,
  withinResultLimit,
} from '../../agent/aggregate.js';
import { MAX_ANSWER_CHARS } from '../../agent/clip.js';
import { packValue } from '../../common/msgpack.js';

describe('normalizeAnswer', () => {
  it('lowercases, strips punctuation, articles and extra whitespace', () => {
    expect(normalizeAnswer('  The Eiffel   Tower! ')).toBe('eiffel tower');
    expect(normalizeAnswer('A cat, an apple.')).toBe('cat apple');
    expect(normalizeAnswer('U.S.A.')).toBe('usa');
    expect(normalizeAnswer('theory')).toBe('theory');
    expect(normalizeAnswer('北京。')).toBe('北京');
    expect(normalizeAnswer('ＡＢＣ')).toBe('abc');
  });

  it('keeps a one-letter choice and words that merely contain an article', () => {
    expect(normalizeAnswer('A')).toBe('a');
    expect(normalizeAnswer('(a)')).toBe('a');
    expect(normalizeAnswer('The')).toBe('the');
    expect(normalizeAnswer('A型血')).toBe('a型血');
    expect(normalizeAnswer('Peña')).toBe('peña');
    expect(exactMatch('Peñ', 'Peña')).toBe(false);
    expect(exactMatch('—', 'A')).toBe(false);
    expect(exactMatch('the', 'A')).toBe(false);
  });

  it('votes on one-letter answers instead of dropping them', () => {
    const votes = ['A', 'a', 'A', 'B'].map((answer, i) => ({ rolloutId: `r${i}`, answer, uncertainty: 1 }));
    expect(aggregate('majority', votes)).toMatchObject({ answer: 'A', excluded: [] });
  });

  it('compares numbers as numbers: a sign or a decimal point is not punctuation to drop', () => {
    expect(exactMatch('-5', '5')).toBe(false);
    expect(exactMatch('−5', '-5')).toBe(true);
    expect(exactMatch('3.5', '35')).toBe(false);
    expect(exactMatch('1,000', '1000')).toBe(true);
    expect(exactMatch('$1,000', '1000.00')).toBe(true);
    expect(exactMatch('50%', '50')).toBe(true);
    expect(exactMatch('3 4', '34')).toBe(false);
    expect(exactMatch('0,001', '1')).toBe(false);
    expect(exactMatch('$-5', '-5')).toBe(true);
    expect(exactMatch('$-5', '5')).toBe(false);
    expect(exactMatch('–5', '-5')).toBe(true);
    // Past a double's precision, digits stay text.
    expect(exactMatch('12345678901234567', '12345678901234568')).toBe(false);
  });

  it('keeps what makes a number within a longer answer what it is: its sign, decimal point and fraction slash', () => {
    expect(exactMatch('3.5 km', '35 km')).toBe(false);
    expect(exactMatch('3.5 km.', '3.5 km')).toBe(true);
    expect(exactMatch('-5 °C', '5 °C')).toBe(false);
    expect(exactMatch('−5 °C', '-5 °C')).toBe(true);
    expect(exactMatch('1/2 cup', '12 cup')).toBe(false);
    expect(exactMatch('½ cup', '1/2 cup')).toBe(true);
    expect(exactMatch('1,5 l', '15 l')).toBe(false);
    // Thousands commas still go, and a hyphen after a word or a number is still punctuation.
    expect(exactMatch('1,000 km', '1000 km')).toBe(true);
    expect(exactMatch('12,345,678 people', '12345678 people')).toBe(true);
    expect(exactMatch('COVID-19', 'covid19')).toBe(true);
    expect(exactMatch('2024-05-01', '20240501')).toBe(true);
    expect(exactMatch('pages 5-10', 'pages 510')).toBe(true);
  });

  it('keeps mathematical symbols, and answers of symbols alone match only themselves', () => {
    expect(exactMatch('x ≥ 3', 'x ≤ 3')).toBe(false);
    expect(exactMatch('x > 3', 'x < 3')).toBe(false);
    expect(exactMatch('x ≥ 3', 'x >= 3')).toBe(true);
    // A minus sign or dash is the hyphen, and the fraction slash the slash, however they were typed.
    expect(exactMatch('−40 °C', '-40 °C')).toBe(true);
    expect(exactMatch('½', '1/2')).toBe(true);
    expect(exactMatch('√2', '2')).toBe(false);
    expect(exactMatch('∞', '∅')).toBe(false);
    expect(exactMatch(' ∞ ', '∞')).toBe(true);
  });

  it('votes for -5 and 5 apart, and still sets aside an answer of symbols alone', () => {
    const votes = ['-5', '5', '5.0', '∞'].map((answer, i) => ({
      rolloutId: `r${i}`,
      answer,
      uncertainty: 1,
    }));
    expect(aggregate('majority', votes)).toEqual({ answer: '5', support: 2, excluded: ['r3'] });
  });

  it('exactMatch compares normalised forms', () => {
    expect(exactMatch('the Beatles', 'Beatles')).toBe(true);
    expect(exactMatch('Beatles.', 'The Rolling Stones')).toBe(false);
    expect(exactMatch(null, 'x')).toBe(false);
  });
});

describe('aggregate', () => {
  const c = (rolloutId: string, answer: string | null, uncertainty: number) => ({
    rolloutId,
    answer,
    uncertainty,
  });

  it('majority picks the most common normalised answer', () => {
    const r = aggregate('majority', [
      c('a', 'Paris', 1.5),
      c('b', 'paris.', 1.2),
      c('c', 'Lyon', 1.0),
      c('d', null, 1),
    ]);
    expect(r).toEqual({ answer: 'Paris', support: 2, excluded: ['d'] });
  });

  it('majority tie goes to the lower mean uncertainty, then to the first given', () => {
    // Paris mean (1.4+1.6)/2 = 1.5, Lyon mean (1.1+1.3)/2 = 1.2 → Lyon
    expect(
      aggregate('majority', [
        c('a', 'Paris', 1.4),
        c('b', 'Lyon', 1.1),
        c('c', 'Paris', 1.6),
        c('d', 'Lyon', 1.3),
      ]).answer,
    ).toBe('Lyon');
    // equal means → the answer given first
    expect(aggregate('majority', [c('a', 'Lyon', 1.2), c('b', 'Paris', 1.2)]).answer).toBe('Lyon');
    expect(aggregate('majority', [c('a', 'Lyon', Infinity), c('b', 'Paris', Infinity)]).answer).toBe('Lyon');
  });

  it('majority tie: a vote of unknown uncertainty does not make its whole group the least confident', () => {
    const votes = [
      c('a', 'Paris', 1.2),
      c('b', 'paris.', Number.NaN),
      c('c', 'Lyon', 1.5),
      c('d', 'Lyon', 1.4),
    ];
    // Paris's known mean (1.2) is below Lyon's (1.45).
    expect(aggregate('majority', votes).answer).toBe('Paris');
    // A group with nothing known ranks below one with something known.
    const unknown = [c('a', 'Paris', Number.NaN), c('b', 'Lyon', 3)];
    expect(aggregate('majority', unknown).answer).toBe('Lyon');
  });

  it('confidence_weighted sums 1/uncertainty', () => {
    // Paris: 1/2 + 1/2 = 1.0; Lyon: 1/1.1 ≈ 0.909 → Paris
    expect(
      aggregate('confidence_weighted', [c('a', 'Paris', 2), c('b', 'Paris', 2), c('c', 'Lyon', 1.1)]),
    ).toEqual({
      answer: 'Paris',
      support: 2,
      excluded: [],
    });
    // Paris: 1/4 + 1/4 = 0.5; Lyon: 1/1.5 ≈ 0.667 → Lyon despite fewer votes
    expect(
      aggregate('confidence_weighted', [c('a', 'Paris', 4), c('b', 'Paris', 4), c('c', 'Lyon', 1.5)]).answer,
    ).toBe('Lyon');
    expect(confidenceWeight(2)).toBe(0.5);
    expect(confidenceWeight(Number.NaN)).toBe(0);
  });

  it('confidence_weighted with unknown uncertainties falls back to votes', () => {
    expect(
      aggregate('confidence_weighted', [c('a', 'X', NaN), c('b', 'Y', NaN), c('c', 'Y', NaN)]).answer,
    ).toBe('Y');
  });

  it('min_uncertainty takes the least uncertain rollout, earliest on ties', () => {
    const r = aggregate('min_uncertainty', [
      c('a', 'Paris', 1.4),
      c('b', 'Lyon', 1.1),
      c('c', 'Paris', 1.3),
      c('d', 'lyon', 1.1),
    ]);
    expect(r).toEqual({ answer: 'Lyon', support: 2, excluded: [] });
    expect(aggregate('min_uncertainty', [c('a', 'X', NaN), c('b', 'Y', 5)]).answer).toBe('Y');
  });

  it('excludes rollouts without a usable answer and reports when none answered', () => {
    for (const name of ['majority', 'confidence_weighted', 'min_uncertainty'] as const) {
      expect(aggregate(name, [c('a', null, 1), c('b', ' . ', 1)])).toEqual({
        answer: null,
        support: 0,
        excluded: ['a', 'b'],
        reason: 'no answered trajectory',
      });
      expect(aggregate(name, [])).toEqual({
        answer: null,
        support: 0,
        excluded: [],
        reason: 'no answered trajectory',
      });
    }
  });
});

describe('withinResultLimit', () => {
  it("keeps a question's result under Temporal's 2 MB payload limit however many long answers its rollouts gave", () => {
    const long = '答'.repeat(MAX_ANSWER_CHARS); // three bytes a character
    const records = Array.from({ length: 1024 }, (_, i) => ({
      rolloutId: `r${i}`,
      prediction: i === 0 ? 'Paris' : i === 1 ? null : long,
      ...(i % 2 === 0 ? { error: 'a failure cause '.repeat(125) } : {}),
    }));
    expect(packValue(records).length).toBeGreaterThan(20 * 1024 * 1024);
    const clipped = withinResultLimit(records);
    expect(packValue(clipped).length).toBeLessThan(1024 * 1024);
    expect(clipped[0]!.prediction).toBe('Paris');
    expect(clipped[1]!.prediction).toBeNull();
    expect(clipped[3]!.prediction!.startsWith('答'.repeat(150))).toBe(true);
    expect(clipped[3]!.prediction).toMatch(/more characters omitted\]$/);
    expect(clipped[2]!.error!.length).toBeLessThan(2000);
    expect(clipped[2]!.error).toMatch(/^a failure cause .*more characters omitted\]$/s);
    expect('error' in clipped[3]!).toBe(false);
    // A few answers keep all they have.
    expect(withinResultLimit(records.slice(0, 8))).toEqual(records.slice(0, 8));
  });
});
