"""Reference side of the face-mesh / iris parity test (runs in the mediapipe 0.10.21 environment).

Usage: ref_mediapipe_mesh.py CASES_IN.npz RESULTS_OUT.npz

CASES_IN holds ``image/NAME`` uint8 [H, W, 3] RGB images. For each image with a face,
RESULTS_OUT receives (all coordinates in pixels: normalised x times W, y times H, z times W):

- ``NAME/box`` [4] (x1, y1, x2, y2) and ``NAME/keypoints`` [6, 2]: the first detection of
  ``mp.solutions.face_detection`` (short range, the detector face mesh uses);
- ``NAME/mesh`` [468, 3]: ``mp.solutions.face_mesh`` with ``refine_landmarks=False``;
- ``NAME/mesh478`` [478, 3]: the same with ``refine_landmarks=True`` (attention model);
- ``NAME/iris`` [10, 3]: iris_landmark.tflite run by MediaPipe's own calculators
  (ImageToTensor, InferenceCalculator, TensorsToLandmarks, LandmarkProjection) on eye ROIs that
  MediaPipe's LandmarksToDetection / DetectionsToRects / RectTransformation(scale 2.3,
  square_long) compute from ``mesh`` corners 33->133 (rows 0-4) and 362->263 (rows 5-9). The
  second eye is processed mirrored, as MediaPipe's iris graph does: here by mirroring the
  image and the corner landmarks, then mirroring the result back;
- ``NAME/eye_roi`` [2, 4]: those ROIs as (cx, cy, side, angle) in pixels / radians.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mediapipe as mp
import numpy as np
from google.protobuf import text_format
from mediapipe.framework import calculator_pb2
from mediapipe.framework.formats import landmark_pb2
from mediapipe.python import packet_creator, packet_getter
from mediapipe.python._framework_bindings import calculator_graph

IRIS_MODEL = str(Path(mp.__file__).parent / "modules" / "iris_landmark" / "iris_landmark.tflite")

IRIS_GRAPH = """
input_stream: "image"
input_stream: "corners"
output_stream: "iris"
output_stream: "roi"
node { calculator: "ImagePropertiesCalculator" input_stream: "IMAGE:image" output_stream: "SIZE:size" }
node { calculator: "LandmarksToDetectionCalculator" input_stream: "NORM_LANDMARKS:corners"
       output_stream: "DETECTION:det" }
node { calculator: "DetectionsToRectsCalculator" input_stream: "DETECTION:det"
       input_stream: "IMAGE_SIZE:size" output_stream: "NORM_RECT:raw_roi"
       options { [mediapipe.DetectionsToRectsCalculatorOptions.ext] {
         rotation_vector_start_keypoint_index: 0 rotation_vector_end_keypoint_index: 1
         rotation_vector_target_angle_degrees: 0 } } }
node { calculator: "RectTransformationCalculator" input_stream: "NORM_RECT:raw_roi"
       input_stream: "IMAGE_SIZE:size" output_stream: "roi"
       options { [mediapipe.RectTransformationCalculatorOptions.ext] {
         scale_x: 2.3 scale_y: 2.3 square_long: true } } }
node { calculator: "ImageToTensorCalculator" input_stream: "IMAGE:image" input_stream: "NORM_RECT:roi"
       output_stream: "TENSORS:input"
       options { [mediapipe.ImageToTensorCalculatorOptions.ext] {
         output_tensor_width: 64 output_tensor_height: 64
         output_tensor_float_range { min: 0 max: 1 } } } }
node { calculator: "InferenceCalculatorCpu" input_stream: "TENSORS:input" output_stream: "TENSORS:output"
       options { [mediapipe.InferenceCalculatorOptions.ext] { model_path: "%s" } } }
node { calculator: "SplitTensorVectorCalculator" input_stream: "output"
       output_stream: "contour_tensor" output_stream: "iris_tensor"
       options { [mediapipe.SplitVectorCalculatorOptions.ext] {
         ranges { begin: 0 end: 1 } ranges { begin: 1 end: 2 } } } }
node { calculator: "TensorsToLandmarksCalculator" input_stream: "TENSORS:iris_tensor"
       output_stream: "NORM_LANDMARKS:iris_crop"
       options { [mediapipe.TensorsToLandmarksCalculatorOptions.ext] {
         num_landmarks: 5 input_image_width: 64 input_image_height: 64 } } }
node { calculator: "LandmarkProjectionCalculator" input_stream: "NORM_LANDMARKS:iris_crop"
       input_stream: "NORM_RECT:roi" output_stream: "NORM_LANDMARKS:iris" }
""" % IRIS_MODEL


def to_px(landmarks, width: int, height: int) -> np.ndarray:
    return np.array([[p.x * width, p.y * height, p.z * width] for p in landmarks], dtype=np.float64)


def run_iris(image: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One eye through the iris graph; corners in pixels. Returns (iris [5, 3] px, roi [4])."""
    height, width = image.shape[:2]
    config = text_format.Parse(IRIS_GRAPH, calculator_pb2.CalculatorGraphConfig())
    graph = calculator_graph.CalculatorGraph(graph_config=config)
    results: dict[str, object] = {}
    graph.observe_output_stream("iris", lambda _, p: results.__setitem__("iris", packet_getter.get_proto(p)))
    graph.observe_output_stream("roi", lambda _, p: results.__setitem__("roi", packet_getter.get_proto(p)))
    corners = landmark_pb2.NormalizedLandmarkList()
    for x, y in (start, end):
        corners.landmark.add(x=float(x) / width, y=float(y) / height)
    graph.start_run()
    graph.add_packet_to_input_stream("image", packet_creator.create_image_frame(
        image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)).at(0))
    graph.add_packet_to_input_stream("corners", packet_creator.create_proto(corners).at(0))
    graph.close()
    roi = results["roi"]
    side = roi.width * width
    return to_px(results["iris"].landmark, width, height), np.array(
        [roi.x_center * width, roi.y_center * height, side, roi.rotation])


def run_case(image: np.ndarray) -> dict[str, np.ndarray] | None:
    height, width = image.shape[:2]
    with mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5) as det:
        found = det.process(image).detections
    if not found:
        return None
    loc = found[0].location_data
    box = loc.relative_bounding_box
    out = {
        "box": np.array([box.xmin * width, box.ymin * height, (box.xmin + box.width) * width,
                         (box.ymin + box.height) * height]),
        "keypoints": np.array([[k.x * width, k.y * height] for k in loc.relative_keypoints]),
    }
    for refine, key in ((False, "mesh"), (True, "mesh478")):
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                             refine_landmarks=refine) as fm:
            faces = fm.process(image).multi_face_landmarks
        if not faces:
            return None
        out[key] = to_px(faces[0].landmark, width, height)

    mesh = out["mesh"]
    iris_a, roi_a = run_iris(image, mesh[33, :2], mesh[133, :2])
    # second eye mirrored: flip the image, mirror the corners (x -> W - 1 - x), swap their order
    flipped = image[:, ::-1]
    mirror = np.array([width - 1.0, 0.0])
    iris_b, roi_b = run_iris(flipped, mirror - mesh[263, :2] * [1, -1], mirror - mesh[362, :2] * [1, -1])
    iris_b[:, 0] = width - 1.0 - iris_b[:, 0]
    roi_b[0] = width - 1.0 - roi_b[0]
    roi_b[3] = -roi_b[3]
    out["iris"] = np.concatenate([iris_a, iris_b])
    out["eye_roi"] = np.stack([roi_a, roi_b])
    return out


def main(cases_in: str, results_out: str) -> None:
    cases = np.load(cases_in)
    results: dict[str, np.ndarray] = {}
    for key in cases.files:
        name = key.split("/", 1)[1]
        found = run_case(cases[key])
        for field, value in (found or {}).items():
            results[f"{name}/{field}"] = value
    np.savez(results_out, **results)


if __name__ == "__main__":
    main(*sys.argv[1:3])
