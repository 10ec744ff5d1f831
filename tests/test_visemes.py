"""The viseme vocabulary and every phoneme inventory it must cover."""

from __future__ import annotations

import os
import struct

import espeakng_loader
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.visemes import vocabulary as V
from training.data.alignment import cmudict, pocketsphinx_model_dir
from training.data.speech import ENGLISH_VOICES, Espeak, Voice

# espeak-ng phoneme types (phoneme.h): 0 pause, 1 stress, 2 vowel, 3 liquid, 4 stop,
# 5 voiced stop, 6 fricative, 7 voiced fricative, 8 nasal, 9 virtual.
SPOKEN_TYPES = range(2, 9)


def espeak_phoneme_tables() -> dict[str, tuple[int, list[tuple[str, int]]]]:
    """Parse espeak-ng-data/phontab -> {table: (includes index, [(mnemonic, type)])}."""
    data = open(os.path.join(espeakng_loader.get_data_path(), "phontab"), "rb").read()
    tables, pos = {}, 4
    for _ in range(data[0]):
        count, includes = data[pos], data[pos + 1]
        name = data[pos + 4:pos + 36].split(b"\0")[0].decode()
        pos += 36
        phonemes = []
        for _ in range(count):
            mnemonic, _flags, _prog, _code, kind = struct.unpack_from("<IIHBB", data, pos)
            pos += 16
            label = mnemonic.to_bytes(4, "little").split(b"\0")[0].decode("latin-1")
            if label:
                phonemes.append((label, kind))
        tables[name] = (includes, phonemes)
    assert pos == len(data), "phontab layout not understood"
    return tables


def english_inventory() -> set[tuple[str, int]]:
    """Phonemes reachable from the en-us and en tables through their includes chain."""
    tables = espeak_phoneme_tables()
    names = list(tables)
    out: set[tuple[str, int]] = set()
    for start in ("en-us", "en"):
        name = start
        while True:
            includes, phonemes = tables[name]
            out.update(phonemes)
            if includes == 0:
                break
            name = names[includes - 1]
    return out


def pocketsphinx_phones() -> list[str]:
    """Context-independent phones of the acoustic model (binary mdef)."""
    data = open(os.path.join(pocketsphinx_model_dir(), "en-us", "mdef"), "rb").read()
    marker = b"END FILE FORMAT DESCRIPTION\n"
    pos = data.index(marker) + len(marker)
    pos += 1 if data[pos] == 0 else 0
    (n_ciphone,) = struct.unpack_from("<i", data, pos)
    names = data[pos + 40:].split(b"\0")[:n_ciphone]
    return [n.decode() for n in names]


def test_vocabulary_is_the_oculus_set_with_sil_first():
    assert V.VISEMES == ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa",
                         "E", "I", "O", "U")
    assert V.NUM_VISEMES == 15 and V.SIL == 0 and V.viseme_id("sil") == 0
    with pytest.raises(KeyError, match="unknown viseme 'XX'"):
        V.viseme_id("XX")


def test_every_cmudict_phone_maps_with_any_stress():
    phones = {p for pron in cmudict().values() for p in pron}
    assert len({p.rstrip("012") for p in phones}) == 39
    for phone in phones:
        assert 0 <= V.arpabet_to_viseme(phone) < V.NUM_VISEMES
    assert V.arpabet_to_viseme("AH0") == V.viseme_id("E")
    assert V.arpabet_to_viseme("AH1") == V.viseme_id("aa")
    assert V.arpabet_to_viseme("m") == V.viseme_id("PP")


def test_every_pocketsphinx_phone_maps_and_non_speech_is_sil():
    phones = pocketsphinx_phones()
    assert "SIL" in phones and "+NSN+" in phones and len(phones) == 42
    for phone in phones:
        V.arpabet_to_viseme(phone)
    for phone in ("SIL", "+NSN+", "+SPN+", "+BREATH+", "<sil>"):
        assert V.arpabet_to_viseme(phone) == V.SIL


def test_every_spoken_espeak_english_phoneme_maps():
    inventory = english_inventory()
    spoken = {name for name, kind in inventory if kind in SPOKEN_TYPES}
    assert len(spoken) > 100
    unmapped = sorted(n for n in spoken if n not in V.ESPEAK_TO_VISEME)
    assert not unmapped, f"espeak-ng phonemes without a viseme: {unmapped}"
    pauses = {name for name, _ in inventory if name.startswith("_") or name == "||"}
    assert {"_", "_:", "_!"} <= pauses
    for name in pauses:
        assert V.espeak_to_viseme(name) == V.SIL


def test_stress_marks_and_pauses():
    assert V.espeak_to_viseme("'aI") == V.espeak_to_viseme("aI") == V.viseme_id("aa")
    assert V.espeak_to_viseme(",oU") == V.viseme_id("O")
    assert V.espeak_to_viseme("_:") == V.SIL
    with pytest.raises(KeyError, match="unknown espeak-ng phoneme"):
        V.espeak_to_viseme("@@@")
    with pytest.raises(KeyError, match="unknown ARPAbet phone"):
        V.arpabet_to_viseme("QQ")


@settings(max_examples=25, deadline=None)
@given(st.text(alphabet=st.sampled_from(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'-"),
    min_size=1, max_size=40))
def test_espeak_phonemes_of_any_english_text_map(text):
    """Whatever English-alphabet text the generator could speak, every phoneme has a viseme."""
    for base in ENGLISH_VOICES:
        for phoneme in Espeak.get().phonemes(text, Voice(base=base)):
            V.espeak_to_viseme(phoneme)


def test_visemes_module_is_shared_not_copied():
    import training.data.mouth as mouth

    assert mouth.TARGETS.shape[0] == V.NUM_VISEMES
