// The instructor's summary arithmetic (web/classview.js): zones over time, sorting.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { hardMinutes, sortPeople, zoneDistribution, zoneOf } from '../../web/classview.js';

const FLOORS = [100, 120, 140, 160, 180];

function person(id, name, series, extra = {}) {
  return {
    id, name, series, zone_floors_bpm: FLOORS,
    summary: { average_bpm: 0, peak_bpm: 0, minutes_in_zone: [0, 0, 0, 0, 0, 0], effort_points: 0, calories_kcal: 0, ...extra },
  };
}

test('a heart rate is in the zone whose floor it has reached', () => {
  assert.equal(zoneOf(99, FLOORS), 0);
  assert.equal(zoneOf(100, FLOORS), 1);
  assert.equal(zoneOf(179, FLOORS), 4);
  assert.equal(zoneOf(200, FLOORS), 5);
});

test('each person counts once per bucket, by their average in it', () => {
  const ann = person('a', 'Ann', [[0, 150], [10, 170], [40, 185]]); // bucket 0: avg 160 → z4
  const ben = person('b', 'Ben', [[5, 110], [35, 130], [59, 130]]); // z1, then z2
  const { t0, step, counts } = zoneDistribution([ann, ben, person('c', 'Cas', [])], 30);
  assert.equal(t0, 0);
  assert.equal(step, 30);
  assert.deepEqual(counts, [[0, 1, 0, 0, 1, 0], [0, 0, 1, 0, 0, 1]]);
  assert.equal(zoneDistribution([person('c', 'Cas', [])]), null);
});

test('the table sorts figures highest first and names alphabetically', () => {
  const people = [
    person('a', 'bea', [], { effort_points: 3, minutes_in_zone: [0, 0, 0, 0, 2, 1] }),
    person('b', 'Al', [], { effort_points: 9, minutes_in_zone: [0, 0, 0, 0, 0, 0.5] }),
    person('c', 'Cy', [], { effort_points: 5, minutes_in_zone: [0, 0, 0, 0, 1, 0] }),
  ];
  assert.deepEqual(sortPeople(people, 'points').map((p) => p.id), ['b', 'c', 'a']);
  assert.deepEqual(sortPeople(people, 'hard').map((p) => p.id), ['a', 'c', 'b']);
  assert.deepEqual(sortPeople(people, 'name').map((p) => p.name), ['Al', 'bea', 'Cy']);
  assert.equal(hardMinutes(people[0]), 3);
});
