"""The viseme vocabulary and every phoneme -> viseme map (the one source of truth).

15 classes, the Oculus/Meta set. Token 0 is ``sil``: the idle, closed mouth, also used
when no visemes are available (the paper's all-zero token). Torch-free: the device
runtime and the training code both import this module.

Inventories mapped here:
- ARPAbet as used by CMUdict, LRS3 alignments and pocketsphinx (stress digits allowed),
  plus pocketsphinx's silence and filler phones.
- espeak-ng phoneme mnemonics of the English tables (``en-us`` -> ``en`` -> ``base1``),
  with stress marks allowed.
- Festival's English phone set (``radio``: lower-case ARPAbet with ``ax`` for the schwa and
  syllabic ``el em en``), as its diphone voices write them in ``utt.save.segs``.
- The phone sets of Festival's voices in other languages (Italian, Finnish, Czech, Russian,
  Catalan), mapped by the place and rounding their phone set files give each phone.
- IPA, as espeak-ng writes any language's phonemes (the cross-lingual labels of recordings
  in other languages), symbol by symbol after diacritics and length marks are removed.
"""

from __future__ import annotations

import unicodedata

VISEMES: tuple[str, ...] = (
    "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U",
)
NUM_VISEMES = len(VISEMES)
SIL = 0
VISEME_INDEX: dict[str, int] = {name: i for i, name in enumerate(VISEMES)}

# ARPAbet (39 CMUdict phones). AH carries stress: AH0 is a schwa (neutral, mid-open: E),
# AH1/AH2 is the open-mid vowel of "cut" (aa); see arpabet_to_viseme.
ARPABET_TO_VISEME: dict[str, str] = {
    "AA": "aa", "AE": "aa", "AH": "aa", "AO": "O", "AW": "aa", "AY": "aa",
    "B": "PP", "CH": "CH", "D": "DD", "DH": "TH", "EH": "E", "ER": "RR",
    "EY": "E", "F": "FF", "G": "kk", "HH": "kk", "IH": "I", "IY": "I",
    "JH": "CH", "K": "kk", "L": "nn", "M": "PP", "N": "nn", "NG": "kk",
    "OW": "O", "OY": "O", "P": "PP", "R": "RR", "S": "SS", "SH": "CH",
    "T": "DD", "TH": "TH", "UH": "U", "UW": "U", "V": "FF", "W": "U",
    "Y": "I", "Z": "SS", "ZH": "CH",
}
ARPABET_SCHWA = "AH0"

# Silence, breath and noise are mapped explicitly to the idle shape, never to a random viseme.
ARPABET_NON_SPEECH: frozenset[str] = frozenset({
    "SIL", "SP", "SPN", "NSN", "+NSN+", "+SPN+", "+BREATH+", "+COUGH+", "+NOISE+",
    "+SMACK+", "+UH+", "+UM+", "<s>", "</s>", "<sil>",
})

# Festival phones that ARPAbet writes otherwise; the rest are ARPAbet in lower case.
FESTIVAL_TO_ARPABET: dict[str, str] = {
    "ax": ARPABET_SCHWA, "axr": "ER", "el": "L", "em": "M", "en": "N",
    "pau": "SIL", "h#": "SIL", "brth": "SIL",
}

# espeak-ng mnemonics (English tables and the base1 consonants they inherit).
ESPEAK_TO_VISEME: dict[str, str] = {
    # vowels
    "a": "aa", "a2": "aa", "aa": "aa", "A:": "aa", "A@": "aa", "A#": "aa", "A~": "aa",
    "V": "aa", "VR": "aa", "aI": "aa", "aI@": "aa", "aI3": "aa", "aU": "aa", "aU@": "aa",
    "@": "E", "@-": "E", "@2": "E", "@5": "E", "@#": "E", "a#": "E", "a#2": "E",
    "e": "E", "e:": "E", "e#": "E", "E": "E", "E#": "E", "E2": "E", "eI": "E", "e@": "E",
    "i": "I", "i:": "I", "I": "I", "I#": "I", "I2": "I", "I2#": "I", "IR": "I",
    "i@": "I", "i@3": "I",
    "o": "O", "o:": "O", "0": "O", "0#": "O", "02": "O", "O": "O", "O:": "O", "O2": "O",
    "O@": "O", "o@": "O", "O~": "O", "oU": "O", "oU#": "O", "OI": "O",
    "u": "U", "u:": "U", "U": "U", "U@": "U",
    "3": "RR", "3:": "RR",
    # syllabic consonants
    "m-": "PP", "n-": "nn", "N-": "kk", "r-": "RR", "l-": "nn", "@L": "nn",
    # bilabials
    "p": "PP", "b": "PP", "m": "PP", "B": "PP",
    # labiodentals
    "f": "FF", "v": "FF", "v#": "FF",
    # dentals
    "T": "TH", "D": "TH",
    # alveolar stops and taps
    "t": "DD", "d": "DD", "t[": "DD", "d[": "DD", "t#": "DD", "t2": "DD", "d#": "DD", "*": "DD",
    # velars, uvulars, glottals
    "k": "kk", "g": "kk", "c": "kk", "J": "kk", "q": "kk", "x": "kk", "X": "kk", "N": "kk",
    "Q": "kk", "Q^": "kk", 'Q"': "kk", "#X1": "kk", "h": "kk", "?": "kk",
    # post-alveolars and palatal fricatives
    "tS": "CH", "dZ": "CH", "tS;": "CH", "dZ;": "CH", "S": "CH", "Z": "CH", "S;": "CH",
    "Z;": "CH", "J^": "CH", "C": "CH",
    # sibilants
    "s": "SS", "z": "SS", "s.": "SS", "z.": "SS", "s;": "SS", "z;": "SS", "z#": "SS",
    "z/2": "SS",
    # nasals and laterals
    "n": "nn", "n.": "nn", "n^": "nn", "l": "nn", "l/": "nn", "l/2": "nn", "l/3": "nn",
    "l^": "nn", "l.": "nn", "L/": "nn", "L": "nn", "l#": "nn",
    # rhotics
    "r": "RR", "r/": "RR", "R": "RR", "R2": "RR", "R3": "RR", 'r"': "RR", "**": "RR", "r.": "RR",
    # glides
    "j": "I", ";": "I", "w": "U", "w#": "U",
}
# Festival's phone sets in other languages, by language (festival_to_viseme's ``language``).
# Stress digits and length marks are stripped first (``a1``, ``a:`` -> ``a``). Rounded front
# vowels take the rounded shape (Finnish y -> U, o-umlaut -> O); open front ones (Finnish
# a-umlaut, written @) the open one; dental and alveolar affricates (ts, dz, Czech c) are
# sibilants; palatal nasals and laterals (J, L, n~) the tongue-up nn; n before f (nf) is
# labiodental.
FESTIVAL_LANGUAGE_TO_VISEME: dict[str, dict[str, str]] = {
    "italian": {
        "#": "sil", "a": "aa", "e": "E", "E": "E", "i": "I", "o": "O", "O": "O", "u": "U",
        "j": "I", "w": "U", "p": "PP", "b": "PP", "m": "PP", "f": "FF", "v": "FF", "nf": "FF",
        "t": "DD", "d": "DD", "k": "kk", "g": "kk", "ng": "kk", "s": "SS", "z": "SS",
        "ts": "SS", "dz": "SS", "S": "CH", "Z": "CH", "tS": "CH", "dZ": "CH", "n": "nn",
        "J": "nn", "l": "nn", "L": "nn", "r": "RR",
    },
    "finnish": {
        "#": "sil", "##": "sil", "a": "aa", "@": "aa", "e": "E", "&": "E", "i": "I", "o": "O",
        "7": "O", "u": "U", "y": "U", "p": "PP", "b": "PP", "m": "PP", "f": "FF", "v": "FF",
        "T": "TH", "D": "TH", "t": "DD", "d": "DD", "k": "kk", "g": "kk", "h": "kk",
        "N": "kk", "s": "SS", "z": "SS", "S": "CH", "Z": "CH", "n": "nn", "l": "nn",
        "L": "nn", "r": "RR", "j": "I", "w": "U",
    },
    "czech": {
        "#": "sil", "_": "kk", "a": "aa", "e": "E", "i": "I", "o": "O", "u": "U",
        "p": "PP", "b": "PP", "m": "PP", "f": "FF", "v": "FF", "t": "DD", "d": "DD",
        "t~": "DD", "d~": "DD", "k": "kk", "g": "kk", "ch": "kk", "h": "kk", "n*": "kk",
        "s": "SS", "z": "SS", "c": "SS", "dz": "SS", "s~": "CH", "z~": "CH", "c~": "CH",
        "dz~": "CH", "n": "nn", "n~": "nn", "l": "nn", "r": "RR", "r~": "RR", "r~*": "RR",
        "j": "I",
    },
    "russian": {
        "pau": "sil", "a": "aa", "aa": "aa", "e": "E", "ee": "E", "ae": "E", "ay": "E",
        "i": "I", "ii": "I", "y": "I", "yy": "I", "oo": "O", "u": "U", "uu": "U", "ur": "U",
        "p": "PP", "pp": "PP", "b": "PP", "bb": "PP", "m": "PP", "mm": "PP", "f": "FF",
        "ff": "FF", "v": "FF", "vv": "FF", "t": "DD", "tt": "DD", "d": "DD", "dd": "DD",
        "k": "kk", "kk": "kk", "g": "kk", "gg": "kk", "h": "kk", "hh": "kk", "s": "SS",
        "ss": "SS", "z": "SS", "zz": "SS", "c": "SS", "sh": "CH", "zh": "CH", "ch": "CH",
        "sch": "CH", "n": "nn", "nn": "nn", "l": "nn", "ll": "nn", "r": "RR", "rr": "RR",
        "j": "I",
    },
    "catalan": {
        "pau": "sil", "#": "sil", "_": "sil", "a": "aa", "ax": "E", "e": "E", "E": "E",
        "i": "I", "o": "O", "O": "O", "u": "U", "j": "I", "w": "U", "p": "PP", "b": "PP",
        "m": "PP", "f": "FF", "t": "DD", "d": "DD", "k": "kk", "g": "kk", "s": "SS",
        "z": "SS", "S": "CH", "Z": "CH", "n": "nn", "J": "nn", "l": "nn", "L": "nn",
        "r": "RR", "rr": "RR",
    },
}

# IPA symbols (base letters; affricates as two letters), by the same rules as the Festival
# maps of other languages: rounded front vowels take the rounded shapes, taps and trills
# and uvular r the rhotic one, dental and alveolar affricates the sibilant one.
IPA_TO_VISEME: dict[str, str] = {
    # vowels
    "a": "aa", "\u0251": "aa", "\u0250": "aa", "\u028c": "aa", "\u00e6": "aa",
    "e": "E", "\u025b": "E", "\u0259": "E",
    "i": "I", "\u026a": "I", "\u0268": "I",
    "o": "O", "\u0254": "O", "\u0252": "O", "\u00f8": "O", "\u0153": "O", "\u0275": "O",
    "u": "U", "\u028a": "U", "\u026f": "U", "y": "U", "\u028f": "U",
    "\u025c": "RR", "\u025a": "RR", "\u025d": "RR",
    # consonants
    "p": "PP", "b": "PP", "m": "PP", "\u03b2": "PP",
    "f": "FF", "v": "FF", "\u0271": "FF",
    "\u03b8": "TH", "\u00f0": "TH",
    "t": "DD", "d": "DD",
    "k": "kk", "g": "kk", "\u0261": "kk", "x": "kk", "\u0263": "kk", "h": "kk", "\u014b": "kk",
    "c": "kk", "\u025f": "kk", "q": "kk",
    "\u0283": "CH", "\u0292": "CH", "\u0255": "CH", "\u0291": "CH", "\u00e7": "CH",
    "t\u0283": "CH", "d\u0292": "CH", "t\u0255": "CH", "d\u0291": "CH",
    "s": "SS", "z": "SS", "ts": "SS", "dz": "SS",
    "n": "nn", "\u0272": "nn", "l": "nn", "\u028e": "nn", "\u026d": "nn", "\u026b": "nn",
    "r": "RR", "\u027e": "RR", "\u0279": "RR", "\u0281": "RR", "\u0280": "RR",
    "j": "I", "\u029d": "I", "w": "U", "\u0265": "U",
}
# Marks dropped before an IPA phoneme is looked up (stress, length, palatalisation,
# aspiration, espeak-ng's own markers); combining diacritics (nasal tilde) are dropped too.
IPA_MARKS = "\u02c8\u02cc\u02d0\u02d1\u02b2\u02b0-\"^"
# Symbols that take no time of their own: the glottal stop is a gap, not a mouth shape.
IPA_SILENT = frozenset({"\u0294"})

# Stress and syllable marks that espeak-ng prefixes to a mnemonic in phoneme events.
ESPEAK_STRESS_MARKS = "',%="


def viseme_id(name: str) -> int:
    """Index of a viseme name; raises KeyError naming the unknown viseme."""
    try:
        return VISEME_INDEX[name]
    except KeyError:
        raise KeyError(f"unknown viseme {name!r}; known: {' '.join(VISEMES)}") from None


def arpabet_to_viseme(phone: str) -> int:
    """ARPAbet phone (e.g. ``AH0``, ``k``, ``SIL``, ``+NSN+``) -> viseme id."""
    upper = phone.strip().upper()
    if upper in ARPABET_NON_SPEECH or phone.strip() in ARPABET_NON_SPEECH:
        return SIL
    if upper == ARPABET_SCHWA:
        return VISEME_INDEX["E"]
    base = upper.rstrip("012")
    if base not in ARPABET_TO_VISEME:
        raise KeyError(f"unknown ARPAbet phone {phone!r}")
    return VISEME_INDEX[ARPABET_TO_VISEME[base]]


def festival_to_viseme(phone: str, language: str = "english") -> int:
    """Festival phone (``pau``, ``hh``, ``ax``, ...) of a voice speaking ``language`` ->
    viseme id."""
    if language == "english":
        name = phone.strip().lower()
        return arpabet_to_viseme(FESTIVAL_TO_ARPABET.get(name, name))
    phones = FESTIVAL_LANGUAGE_TO_VISEME[language]
    name = phone.strip()
    base = name if name in phones else name.rstrip("1:")
    if base not in phones:
        raise KeyError(f"unknown {language} Festival phone {phone!r}")
    return VISEME_INDEX[phones[base]]


def espeak_to_viseme(mnemonic: str) -> int:
    """espeak-ng phoneme mnemonic (stress marks allowed; ``_`` pauses) -> viseme id."""
    name = mnemonic.strip().lstrip(ESPEAK_STRESS_MARKS)
    if name == "" or name.startswith("_") or name in {"||", ":", "-"}:
        return SIL
    if name not in ESPEAK_TO_VISEME:
        raise KeyError(f"unknown espeak-ng phoneme {mnemonic!r}")
    return VISEME_INDEX[ESPEAK_TO_VISEME[name]]


def ipa_symbols(phoneme: str) -> list[str]:
    """One IPA phoneme as espeak-ng writes it (``\u02c8\u025b``, ``t\u02d0``, ``v\u02b2``,
    ``\u0254\u0303``, ``t\u0283``) -> its keys of IPA_TO_VISEME, in order ([] for a glottal
    stop); raises KeyError naming a symbol the map lacks."""
    base = "".join(ch for ch in unicodedata.normalize("NFC", phoneme)
                   if ch not in IPA_MARKS and not unicodedata.combining(ch))
    out, i = [], 0
    while i < len(base):
        size = 2 if base[i:i + 2] in IPA_TO_VISEME else 1
        symbol = base[i:i + size]
        if symbol not in IPA_TO_VISEME and symbol not in IPA_SILENT:
            raise KeyError(f"unknown IPA symbol {symbol!r} in {phoneme!r}")
        if symbol not in IPA_SILENT:
            out.append(symbol)
        i += size
    return out


def ipa_to_viseme(symbol: str) -> int:
    """A key of IPA_TO_VISEME -> viseme id."""
    return VISEME_INDEX[IPA_TO_VISEME[symbol]]
