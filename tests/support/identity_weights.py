"""Random-weight files in the published feat-v2 identity layouts, for tests.

``write_random_arcface`` writes what ``py-feat/arcface_r50`` ships (safetensors, 237 tensors,
no ``num_batches_tracked``, no prefix); ``write_random_facenet`` writes what ``py-feat/facenet``
ships (``torch.save`` of a 716-entry state dict). The code lives in
:mod:`facecli.models.random_weights` (``facecli bench --random-weights`` uses it too).
"""

from facecli.models.random_weights import (  # noqa: F401
    random_arcface_state,
    random_facenet_state,
    write_random_arcface,
    write_random_facenet,
)
