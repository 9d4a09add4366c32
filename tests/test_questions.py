"""Template questions: label masking (property tests), template variety, seeding; frozen token embeddings."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_data import tiny_hf_checkpoint

from vidmamba.data.questions import (MASK, NOUN_TEMPLATES, VERB_TEMPLATES, HFTokenEmbedding, QuestionDataset,
                                     QuestionGenerator, WordVocab, key_to_words, leaked_words, mask_words,
                                     read_input_embedding, tokenize)
from vidmamba.models.mambavl import MambaVL, MambaVLConfig

# tricky keys: multi-word, ':' modifiers, and words that also occur in the templates ("hand", "use", "object")
VERBS = ["take", "put-down", "hold", "use", "cut", "turn-on", "look", "do"]
NOUNS = ["pan:dust", "hand", "glass", "cheese:parmesan", "object", "video", "machine:washing", "person"]


def test_key_to_words():
    assert key_to_words("take") == ["take"]
    assert key_to_words("put-down") == ["put", "down"]
    assert key_to_words("pan:dust") == ["dust", "pan"]
    assert key_to_words("Machine:Washing") == ["washing", "machine"]
    assert key_to_words("oil:olive-extra") == ["olive", "extra", "oil"]
    with pytest.raises(ValueError):
        key_to_words(" : ")


def test_mask_words_merges_phrases_and_inflections():
    assert mask_words("What do the hands put down?", ["put", "down"]) == "what do the hands <mask> ?"
    assert mask_words("Is she cutting glasses using it?", ["cut", "glass", "use"]) == "is she <mask> it ?"
    assert leaked_words("the <mask> holds a pan", ["hold", "pan"]) == ["holds", "pan"]


def _assert_no_leak(q: str, label_words):
    toks = tokenize(q)
    assert not set(toks) & set(label_words), (q, label_words)      # no exact word (independent of the matcher)
    assert leaked_words(q, label_words) == [], q                    # nor an inflected form


def test_questions_never_contain_the_label_words_for_any_class_pair():
    gen = QuestionGenerator(VERBS, NOUNS, seed=0)
    for v, vkey in enumerate(VERBS):
        for n, nkey in enumerate(NOUNS):
            label_words = key_to_words(vkey) + key_to_words(nkey)
            for key in range(12):
                pair = gen.generate(v, n, key=key)
                _assert_no_leak(pair.verb_question, label_words)
                _assert_no_leak(pair.noun_question, label_words)
                # the slot naming the other label is replaced by <mask> (as the official mask_given_phrase)
                if "{noun}" in VERB_TEMPLATES[pair.verb_template]:
                    assert MASK in tokenize(pair.verb_question)
                if "{verb}" in NOUN_TEMPLATES[pair.noun_template]:
                    assert MASK in tokenize(pair.noun_question)


_key = st.from_regex(r"[a-z]{1,7}(-[a-z]{1,6})?(:[a-z]{1,7})?", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(_key, min_size=1, max_size=4), st.lists(_key, min_size=1, max_size=4), st.integers(0, 10**6))
def test_property_no_label_word_survives(verbs, nouns, key):
    gen = QuestionGenerator(verbs, nouns, seed=key % 7)
    for v in range(len(verbs)):
        for n in range(len(nouns)):
            pair = gen.generate(v, n, key=key)
            words = key_to_words(verbs[v]) + key_to_words(nouns[n])
            _assert_no_leak(pair.verb_question, words)
            _assert_no_leak(pair.noun_question, words)


def test_templates_vary_and_all_are_used():
    gen = QuestionGenerator(VERBS, NOUNS, seed=0)
    pairs = [gen.generate(0, 0, key=f"P01_{i:03d}") for i in range(200)]
    assert {p.verb_template for p in pairs} == set(range(len(VERB_TEMPLATES)))
    assert {p.noun_template for p in pairs} == set(range(len(NOUN_TEMPLATES)))
    assert len({p.verb_question for p in pairs}) > 1 and len({p.noun_question for p in pairs}) > 1


def test_seeded_determinism():
    a, b = QuestionGenerator(VERBS, NOUNS, seed=3), QuestionGenerator(VERBS, NOUNS, seed=3)
    assert [a.generate(1, 2) for _ in range(20)] == [b.generate(1, 2) for _ in range(20)]
    # keyed draws do not depend on the stream position or on other calls
    assert a.generate(4, 5, key="P02_17") == QuestionGenerator(VERBS, NOUNS, seed=3).generate(4, 5, key="P02_17")
    other = QuestionGenerator(VERBS, NOUNS, seed=4)
    keys = [f"k{i}" for i in range(30)]
    assert [a.generate(0, 0, key=k) for k in keys] != [other.generate(0, 0, key=k) for k in keys]
    with pytest.raises(IndexError):
        a.generate(len(VERBS), 0)
    with pytest.raises(ValueError, match="slot"):
        QuestionGenerator(VERBS, NOUNS, verb_templates=("What {verb}?",))


def test_from_ek100_class_csvs(tmp_path):
    for name, keys in (("verbs.csv", VERBS), ("nouns.csv", NOUNS)):
        rows = "".join(f'{i},{k},"[\'{k}\']",cat\n' for i, k in enumerate(keys))
        (tmp_path / name).write_text("id,key,instances,category\n" + rows)
    gen = QuestionGenerator.from_ek100(tmp_path / "verbs.csv", tmp_path / "nouns.csv", seed=0)
    assert gen.noun_words[0] == ["dust", "pan"] and gen.verb_words[1] == ["put", "down"]


def test_word_vocab_encodes_and_is_frozen_and_seeded():
    gen = QuestionGenerator(VERBS, NOUNS)
    vocab = WordVocab.from_generator(gen, dim=6, seed=1, max_length=8)
    assert vocab.itos[:3] == ["<pad>", "<unk>", MASK] and not vocab.embedding.weight.requires_grad
    enc = vocab.encode("What is the person doing with the <mask> ? zzz")
    assert enc["ids"].tolist()[7] == 2 and len(enc["ids"]) == 8                 # truncated to max_length
    torch.testing.assert_close(enc["embeddings"], vocab.embedding.weight[enc["ids"]])
    assert enc["mask"].all()
    padded = vocab.encode("take the zzz", pad=True)
    assert padded["ids"].tolist()[1:] == [vocab.stoi["the"], 1, 0, 0, 0, 0, 0]
    assert padded["mask"].tolist() == [True] * 3 + [False] * 5 and padded["embeddings"][3:].abs().sum() == 0
    same = WordVocab.from_generator(gen, dim=6, seed=1)
    assert torch.equal(same.embedding.weight, vocab.embedding.weight)
    assert not torch.equal(WordVocab.from_generator(gen, dim=6, seed=2).embedding.weight, vocab.embedding.weight)
    for v in range(len(VERBS)):                                     # every generated token is in the vocabulary
        pair = gen.generate(v, v, key=v)
        assert 1 not in vocab.encode(pair.verb_question)["ids"] and 1 not in vocab.encode(pair.noun_question)["ids"]


class _FakeEK100:
    def __init__(self, n=3):
        g = torch.Generator().manual_seed(0)
        self.items = [{"narration_id": f"P01_{i}", "video": torch.randn(3 + i, 12, generator=g),
                       "verb": torch.tensor(i % len(VERBS)), "noun": torch.tensor((2 * i) % len(NOUNS))}
                      for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.mark.slow
def test_question_dataset_feeds_mambavl_and_embedding_gets_no_gradient():
    gen = QuestionGenerator(VERBS, NOUNS, seed=0)
    vocab = WordVocab.from_generator(gen, dim=10, seed=0)
    ds = QuestionDataset(_FakeEK100(), gen, vocab)
    item = ds[1]
    assert item["verb_question_text"] == gen.generate(1, 2, key="P01_1").verb_question
    batch = ds.collate([ds[i] for i in range(len(ds))])
    assert batch["verb_question"].shape[:2] == batch["verb_question_mask"].shape
    torch.manual_seed(0)
    model = MambaVL(MambaVLConfig(video_dim=12, text_dim=10, d_model=16, d_state=4, num_verbs=len(VERBS),
                                  num_nouns=len(NOUNS), dropout=0.0))
    # embed inside the graph (ids -> frozen table) to check that no gradient reaches the table
    batch["verb_question"] = vocab(batch["verb_question_ids"])
    batch["noun_question"] = vocab(batch["noun_question_ids"])
    model(batch)["loss"].backward()
    assert vocab.embedding.weight.grad is None and not vocab.embedding.weight.requires_grad
    assert model.txt_proj[0].weight.grad.abs().sum() > 0
    pred = QuestionDataset(_FakeEK100(), gen, vocab, question_actions={f"P01_{i}": (0, 1) for i in range(3)})[2]
    assert pred["noun_question_text"] == gen.generate(0, 1, key="P01_2").noun_question


def test_hf_token_embedding_reads_only_the_embedding_matrix(tmp_path):
    gen = QuestionGenerator(VERBS, NOUNS)
    fast, table = tiny_hf_checkpoint(tmp_path, gen.vocabulary_words())
    torch.testing.assert_close(read_input_embedding(tmp_path), table)
    emb = HFTokenEmbedding(tmp_path, max_length=40)
    assert not emb.embedding.weight.requires_grad and emb.dim == 8
    enc = emb.encode("what is the person doing with the <mask> ?")
    ids = enc["ids"].tolist()
    assert ids[0] == fast.cls_token_id and ids[-1] == fast.sep_token_id and fast.mask_token_id in ids
    assert fast.unk_token_id not in ids
    torch.testing.assert_close(enc["embeddings"], table[enc["ids"]])
    with pytest.raises(FileNotFoundError):
        read_input_embedding(tmp_path / "missing")


def test_context_is_appended_and_masked_and_generic_questions_are_label_free():
    gen = QuestionGenerator(["take", "put-down"], ["jar", "pan:dust"], verb_templates=("What is done to the {noun}?",),
                            noun_templates=("What do they {verb}?",))
    pair = gen.generate(1, 1, key="a", context="put down dust pan in the cupboard")
    assert pair.verb_question == "what is done to the <mask> ? <mask> in the cupboard"
    assert pair.noun_question == "what do they <mask> ? <mask> in the cupboard"
    generic = gen.generic()
    assert (generic.verb_question, generic.noun_question) == ("what action is performed using hands in the video ?",
                                                              "what is the object in the video ?")
