import numpy as np
import pytest

from charseq import UsageError, Vocabulary


def test_from_text_is_sorted_unique_characters():
    vocab = Vocabulary.from_text("hello world")
    assert vocab.symbols == (" ", "d", "e", "h", "l", "o", "r", "w")
    assert len(vocab) == 8


def test_from_symbols_keeps_their_order():
    assert Vocabulary("ZYX").encode("XYZ").tolist() == [2, 1, 0]


def test_encode_decode_round_trip_with_unicode():
    text = "naïve café — ünïcödé ✓\n\t"
    vocab = Vocabulary.from_text(text)
    ids = vocab.encode(text)
    assert ids.shape == (len(text),)
    assert np.issubdtype(ids.dtype, np.integer)
    assert vocab.decode(ids) == text


def test_every_symbol_decodes_exactly_nul_included():
    """A numpy string array drops NUL (its padding): decoding must not go through one."""
    text = "ab\0c\0\0\U0001F600\0"
    vocab = Vocabulary.from_text(text)
    assert vocab.symbols[0] == "\0"
    assert vocab.decode(vocab.encode(text)) == text
    assert vocab.decode([0, 0]) == "\0\0" and vocab.decode(np.zeros((0,), dtype=np.intp)) == ""


def test_ids_use_narrow_dtype_and_widen_past_256_symbols():
    assert Vocabulary("ab").encode("ab").dtype == np.uint8
    wide = Vocabulary([chr(0x4E00 + i) for i in range(300)])
    ids = wide.encode(chr(0x4E00 + 299))
    assert ids.dtype == np.int32 and ids.tolist() == [299]


def test_unknown_characters_are_named():
    vocab = Vocabulary("abc")
    with pytest.raises(UsageError, match=r"2 characters not in the vocabulary: 'x', 'z'"):
        vocab.encode("abzcx")


def test_unknown_character_above_every_symbol_code_point():
    with pytest.raises(UsageError, match="'✓'"):
        Vocabulary("abc").encode("a✓")


def test_one_hot_is_float32_rows():
    vocab = Vocabulary("abcd")
    hot = vocab.one_hot(vocab.encode("db"))
    assert hot.dtype == np.float32
    assert hot.tolist() == [[0, 0, 0, 1], [0, 1, 0, 0]]


def test_json_round_trip():
    vocab = Vocabulary.from_text("Ünicode\n and \"quotes\"")
    again = Vocabulary.from_json(vocab.to_json())
    assert again == vocab and again.symbols == vocab.symbols


@pytest.mark.parametrize("symbols", [[], ["ab"], ["a", "a"], [3]])
def test_invalid_symbol_lists_are_refused(symbols):
    with pytest.raises(UsageError):
        Vocabulary(symbols)


def test_decode_refuses_out_of_range_ids():
    with pytest.raises(UsageError, match="0..2"):
        Vocabulary("abc").decode([3])
