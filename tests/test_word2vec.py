"""The main job: word2vec with two sparse embeddings learns planted structure, and the demo
command writes its files and turns bad input into clear messages."""

import os
import re

import numpy as np
import pytest

import embtable as et
from embtable.apps.cli import main
from embtable.apps.corpus import file_corpus, sentences, words
from embtable.apps.word2vec import NoiseSampler, Settings, Vocabulary, keep_probabilities, train, unit_rows

GROUPS = [[name + letter for letter in "abcdefgh"] for name in ("red", "blue", "green", "gold")]


def planted_corpus(rng, count=1500, length=10):
    """Sentences whose words all come from one group: words co-occur only within a group."""
    return [list(rng.choice(GROUPS[rng.integers(len(GROUPS))], size=length)) for _ in range(count)]


def test_words_and_sentences():
    assert words("Don't PANIC: it's 42 o'clock.") == ["don't", "panic", "it's", "o'clock"]
    assert list(sentences("One two. Three!\n\nFour")) == [["one", "two"], ["three"], ["four"]]


def test_planted_groups_are_learned():
    rng = np.random.default_rng(0)
    corpus = planted_corpus(rng)
    vocabulary = Vocabulary.build(corpus, min_count=1)
    ids, sentence_of = vocabulary.encode(corpus)
    et.manual_seed(0)
    model, losses, finished = train(vocabulary, ids, sentence_of,
                                    Settings(dim=16, window=3, epochs=4, lr=0.02, batch=1024, subsample=1),
                                    rng)
    assert finished and len(losses) == 4 and all(losses)  # one list of batch losses per epoch
    assert np.mean(losses[-1][-10:]) < 0.7 * np.mean(losses[0][:10])
    unit = unit_rows(model.words.weight.numpy().astype(np.float64))
    group = np.array([[g for g, members in enumerate(GROUPS) if w in members][0] for w in vocabulary.words])
    similarity = unit @ unit.T
    same = group[:, None] == group[None, :]
    np.fill_diagonal(same, False)
    different = group[:, None] != group[None, :]
    within, across = similarity[same].mean(), similarity[different].mean()
    assert within > 0.8 and within - across > 0.4, (within, across)
    rows, _ = model.words.most_similar(vocabulary.index()["reda"], k=5)
    neighbours = [vocabulary.words[row] for row in rows.tolist()]
    assert all(w.startswith("red") for w in neighbours)


def test_interrupted_training_keeps_what_it_learned():
    rng = np.random.default_rng(1)
    corpus = planted_corpus(rng, count=300)
    vocabulary = Vocabulary.build(corpus, min_count=1)
    ids, sentence_of = vocabulary.encode(corpus)
    calls = []

    def stop_after_three(words, loss):
        calls.append(loss)
        if len(calls) == 3:
            raise KeyboardInterrupt

    model, losses, finished = train(vocabulary, ids, sentence_of, Settings(dim=8, batch=64, epochs=3), rng,
                                    stop_after_three)
    assert not finished and losses == [calls] and model.words.weight.shape == (32, 8)  # 3 batches of epoch 1


@pytest.mark.parametrize("words, zipf", [(10, False), (50, True)])
def test_small_vocabularies_train_stably_in_large_batches(words, zipf):
    """Batches of 4096 pairs draw every word of a tiny vocabulary thousands of times: summed,
    those SGD steps diverged until a row's steps were capped."""
    rng = np.random.default_rng(3)
    names = [f"w{i}" for i in range(words)]
    p = 1 / np.arange(1, words + 1) if zipf else np.ones(words)
    corpus = [list(rng.choice(names, size=12, p=p / p.sum())) for _ in range(3000)]
    vocabulary = Vocabulary.build(corpus, min_count=1)
    ids, sentence_of = vocabulary.encode(corpus)
    et.manual_seed(0)
    model, losses, _ = train(vocabulary, ids, sentence_of, Settings(dim=16, epochs=3, subsample=1e-3), rng)
    assert np.isfinite(model.words.weight.numpy()).all()
    assert np.isfinite(losses[-1]).all() and np.mean(losses[-1]) < losses[0][0]


def test_noise_sampler_draws_each_word_with_its_probability():
    rng = np.random.default_rng(4)
    p = 1 / np.arange(1, 3001) ** 1.1
    p /= p.sum()
    draws = 4_000_000
    counts = np.bincount(NoiseSampler(p).draw(rng, (draws,)), minlength=p.size)
    z = (counts - draws * p) / np.sqrt(draws * p)
    assert abs((z ** 2).mean() - 1) < 0.1 and np.abs(z).max() < 6  # chi-square per degree of freedom ~1
    rare = np.full(2**20 + 1, 2.0**-24)  # a million words of 1/16 of a slot of a 2**20-slot table each
    rare[0] = 15 / 16
    drawn = NoiseSampler(rare / rare.sum()).draw(rng, (draws,))
    assert abs((drawn > 0).mean() - 1 / 16) < 0.002
    assert np.unique(drawn).size > 180_000  # ~221,000 expected; a table of slots holds at most 65,536 of them


def test_subsampling_keeps_rare_words():
    keep = keep_probabilities(np.array([1_000_000, 10, 1]), 1e-3)
    assert keep[0] < 0.05 and keep[1] == keep[2] == 1.0


def write_corpus(tmp_path, rng):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(s) + "." for s in planted_corpus(rng, count=200)), encoding="utf-8")
    return path


def test_demo_writes_every_output_and_neighbors_reads_them(tmp_path, capsys):
    out = tmp_path / "out"
    corpus = write_corpus(tmp_path, np.random.default_rng(2))
    assert main(["demo", "--corpus", str(corpus), "--out", str(out), "--epochs", "1", "--dim", "8",
                 "--min-count", "1", "--probes", "reda", "purple"]) == 0
    printed = capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["loss.png", "map.png", "vectors.safetensors", "vectors.txt", "vocab.txt"]
    for plot in ("loss.png", "map.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and (out / plot).stat().st_size > 10_000
    assert "reda:" in printed and "'purple' is not in the vocabulary of 32 words" in printed
    lines = (out / "vectors.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "32 8" and len(lines) == 33 and len(lines[1].split()) == 9
    table = et.nn.Embedding.load(out / "vectors.safetensors")
    assert table.weight.shape == (32, 8)
    assert main(["neighbors", "reda", "--vectors", str(out), "-k", "3"]) == 0
    assert capsys.readouterr().out.startswith("reda: ")
    assert main(["neighbors", "purple", "--vectors", str(out)]) == 2
    assert "not in the vocabulary" in capsys.readouterr().out


def test_demo_help_explains_every_option_and_its_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit:
        main(["demo", "--help"])
    assert exit.value.code == 0
    options = capsys.readouterr().out.split("options:")[1]
    entries = re.split(r"\n(?=  -)", options.strip("\n"))  # one entry per option, wrapped lines included
    names = [entry.split()[0].rstrip(",") for entry in entries]
    assert names[0] == "-h" and {"--corpus", "--out", "--dim", "--epochs", "--lr", "--probes"} <= set(names)
    for entry in entries[1:]:
        assert re.search(r"\(default: [^)]+\)", entry), entry
        assert len(entry.split("(default")[0].split()) > 3, entry  # a help text, not only the option's name
    for option, default in [("--dim", Settings().dim), ("--epochs", Settings().epochs), ("--optimizer", "sgd"),
                            ("--lr", "0.025 for sgd, 0.01 for adam")]:
        assert f"(default: {default})" in " ".join(entries[names.index(option)].split())


@pytest.mark.parametrize("content, message", [
    ("", "holds no words"),
    ("one two three. four five.", "no more than the window (5)"),
    ("one. two. three. four. five. six. seven.", "no two words of the corpus share a sentence"),
])
def test_demo_explains_bad_corpora(tmp_path, capsys, content, message):
    path = tmp_path / "corpus.txt"
    path.write_text(content, encoding="utf-8")
    assert main(["demo", "--corpus", str(path), "--out", str(tmp_path / "out"), "--min-count", "1"]) == 2
    assert message in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_demo_explains_unreadable_corpus_and_missing_vectors(tmp_path, capsys):
    assert main(["demo", "--corpus", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read the corpus" in capsys.readouterr().out
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(et.InvalidArgumentError, match="cannot read"):
        file_corpus(str(tmp_path / "latin1.txt"))
    assert main(["neighbors", "x", "--vectors", str(tmp_path / "nowhere")]) == 2
    assert "run `embtable demo` first" in capsys.readouterr().out


def test_the_command_lets_openmp_workers_sleep_unless_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.setenv("OMP_WAIT_POLICY", "")  # so that the undo restores whatever was there before
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert main(["neighbors", "word", "--vectors", str(tmp_path / "none")]) == 2
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert main(["neighbors", "word", "--vectors", str(tmp_path / "none")]) == 2
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
