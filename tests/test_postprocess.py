"""Largest-connected-component post-processing, against components counted by hand."""

import numpy as np

from svgan.evaluation.postprocess import keep_largest_component


def test_each_class_keeps_its_largest_component_per_volume():
    classes = np.zeros((2, 3, 8, 8), np.uint8)  # [phase, Z, H, W]
    classes[0, 1, 1:4, 1:4] = 3      # 9 voxels of class 3
    classes[0, 1, 6, 6] = 3          # an isolated voxel of class 3: removed
    classes[0, 0:3, 5, 1] = 1        # 3 voxels of class 1 across slices
    classes[0, 2, 7, 7] = 1          # a single voxel of class 1 elsewhere: removed
    classes[0, 2, 4, 4] = 2          # class 2 diagonal to class 3's block in the next slice: its only piece, kept
    classes[1, 0, 0, 0] = 3          # phase 1 is its own volume: its one voxel of class 3 stays
    out = keep_largest_component(classes)
    expected = classes.copy()
    expected[0, 1, 6, 6] = 0
    expected[0, 2, 7, 7] = 0
    assert np.array_equal(out, expected)
    assert classes[0, 1, 6, 6] == 3  # the input is left alone


def test_diagonal_neighbours_across_slices_are_one_component():
    classes = np.zeros((3, 5, 5), np.uint8)
    classes[0, 1, 1] = classes[1, 2, 2] = classes[2, 3, 3] = 2  # a diagonal chain: 26-connected
    classes[0, 4, 0] = classes[0, 4, 1] = 2                     # 2 voxels apart from it
    out = keep_largest_component(classes)
    assert out[0, 1, 1] == out[1, 2, 2] == out[2, 3, 3] == 2 and out[0, 4, 0] == out[0, 4, 1] == 0
