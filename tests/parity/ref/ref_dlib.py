"""Reference side of the dlib parity test: dlib's own face descriptor for given 5-point shapes.

Usage: ref_dlib.py MODEL.dat IN.npz OUT.npz
IN.npz: images (uint8 [K, H, W, 3] RGB, same size) and points (float [K, 5, 2] in dlib's 5-point
order). OUT.npz: descriptors [K, 128] and chips (uint8 [K, 150, 150, 3], dlib.get_face_chip).
"""

import sys

import dlib
import numpy as np

model = dlib.face_recognition_model_v1(sys.argv[1])
data = np.load(sys.argv[2])
descriptors, chips = [], []
for image, points in zip(data["images"], data["points"]):
    image = np.ascontiguousarray(image)
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    rect = dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
    shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in points])
    descriptors.append(np.array(model.compute_face_descriptor(image, shape)))
    chips.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
np.savez(sys.argv[3], descriptors=np.stack(descriptors), chips=np.stack(chips))
