"""CLIP encoders from a local folder (a tiny random CLIP built offline): the QVHighlights feature conventions."""
import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from vidmamba.video.encoders import ClipEncoder, save_tiny_clip  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny", image_dim=12, text_dim=16)


@pytest.fixture(scope="module")
def encoder(tiny):
    return ClipEncoder(tiny, batch_size=3)


def test_image_features_are_normalised_projected_pooled_embeddings(encoder):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 40, 60, 3), dtype=np.uint8)
    feats = encoder.encode_images(images)  # 3 forward passes of <= 3 images
    assert feats.shape == (7, 12) and feats.dtype == np.float32
    with torch.no_grad():  # reference: transformers' own CLIP image embedding, all images at once
        pixels = encoder.processor(images=list(images), return_tensors="pt")["pixel_values"]
        ref = encoder.model.get_image_features(pixel_values=pixels)
        ref = torch.nn.functional.normalize(getattr(ref, "pooler_output", ref), dim=-1).numpy()
    np.testing.assert_allclose(feats, ref, atol=1e-5)
    # a clip of two frames: the normalised mean of its frames' normalised embeddings
    clip = encoder.encode_clips(images[:6].reshape(3, 2, 40, 60, 3))
    mean = feats[:6].reshape(3, 2, 12).mean(1)
    np.testing.assert_allclose(clip, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-5)


def test_text_features_are_unprojected_token_states_of_valid_tokens(encoder):
    queries = ["a man opens the door", "dog"]
    feats = encoder.encode_text(queries)
    ids = [encoder.tokenizer(q)["input_ids"] for q in queries]
    assert [f.shape for f in feats] == [(len(i), 16) for i in ids]  # start + tokens + end, no padding
    with torch.no_grad():
        for f, i in zip(feats, ids):
            alone = encoder.model.text_model(input_ids=torch.tensor([i])).last_hidden_state[0].numpy()
            np.testing.assert_allclose(f, alone, atol=1e-5)  # batching with a longer query changes nothing
            # the last token (end) projected is CLIP's sentence embedding: the tokens are the unprojected states
            sent = encoder.model.get_text_features(input_ids=torch.tensor([i]))
            sent = getattr(sent, "pooler_output", sent)[0]
            np.testing.assert_allclose(encoder.model.text_projection(torch.from_numpy(f[-1])).numpy(), sent,
                                       atol=1e-5)


def test_long_queries_are_truncated_to_the_context_and_empty_ones_rejected(encoder):
    assert encoder.encode_text(["word " * 200])[0].shape == (encoder.max_text_len, 16)
    with pytest.raises(ValueError, match="query 1 is empty"):
        encoder.encode_text(["fine", "  "])


def test_fingerprint_identifies_the_weights(tiny, encoder):
    again = ClipEncoder(tiny)
    assert again.fingerprint == encoder.fingerprint
    with torch.no_grad():
        again.model.visual_projection.weight[0, 0] += 1e-3
    del again.__dict__["fingerprint"]
    assert again.fingerprint != encoder.fingerprint


def test_a_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a CLIP model folder"):
        ClipEncoder(tmp_path)
