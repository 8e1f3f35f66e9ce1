import collections

from svgan.data.split import extend_split, stratified_split

FRACTIONS = [0.7, 0.1, 0.2]


def _count(assignment, diseases):
    return collections.Counter((diseases[p], s) for p, s in assignment.items())


def test_split_sizes_and_stratification_on_brats_2017_proportions():
    diseases = {f"HGG{i:03d}": 0 for i in range(210)} | {f"LGG{i:03d}": 1 for i in range(75)}
    a = stratified_split(diseases, FRACTIONS, seed=0)
    c = _count(a, diseases)
    # Per class: 10 % validation and 20 % test, rounded; the rest trains.
    assert (c[0, "validation"], c[0, "test"], c[0, "train"]) == (21, 42, 147)
    assert (c[1, "validation"], c[1, "test"]) in {(7, 15), (8, 15)}
    assert sum(v == "validation" for v in a.values()) == round(285 * 0.1)
    assert sum(v == "test" for v in a.values()) == round(285 * 0.2)


def test_small_cohort_still_gets_validation_patients_and_every_class_trains():
    diseases = {f"p{i}": i % 5 for i in range(24)}
    a = stratified_split(diseases, FRACTIONS, seed=0)
    counts = collections.Counter(a.values())
    assert counts["validation"] == 2 and counts["test"] == 5
    c = _count(a, diseases)
    assert all(c[k, "train"] >= 1 for k in range(5))


def test_split_is_seeded_and_independent_of_listing_order():
    diseases = {f"p{i}": i % 2 for i in range(40)}
    reversed_order = dict(reversed(list(diseases.items())))
    assert stratified_split(diseases, FRACTIONS, 3) == stratified_split(reversed_order, FRACTIONS, 3)
    assert stratified_split(diseases, FRACTIONS, 3) != stratified_split(diseases, FRACTIONS, 4)


def test_unknown_disease_is_its_own_stratum():
    diseases = {f"a{i}": None for i in range(10)} | {f"b{i}": 0 for i in range(10)}
    a = stratified_split(diseases, FRACTIONS, 0)
    c = _count(a, diseases)
    assert c[None, "test"] == 2 and c[0, "test"] == 2


def test_extending_keeps_existing_assignments():
    diseases = {f"p{i}": i % 2 for i in range(20)}
    first = stratified_split(diseases, FRACTIONS, 0)
    more = diseases | {f"new{i}": 1 for i in range(5)}
    second = extend_split(first, more, FRACTIONS, 0)
    assert all(second[p] == s for p, s in first.items())
    assert set(second) == set(more)
