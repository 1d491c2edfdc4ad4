"""個人番号 check digit (総務省令第85号 第5条, rules.md §20 M2) and the TEST numbering function."""
import pytest
from hypothesis import given, strategies as st

from mynaemu.issuance.numbering import (
    check_digit,
    individual_number_from_juminhyo_code,
    is_valid_individual_number,
    with_check_digit,
)

# Hand-computed: Pn counted from the right, Qn = 2..7 then 2..6.
HAND = [
    ("12345678901", 8),  # Σ = 212, 212 mod 11 = 3 -> 8 (rules.md §20 M2)
    ("11111111111", 8),  # Σ Q = 47, mod 11 = 3 -> 8
    ("99999999999", 6),  # 423 mod 11 = 5 -> 6
    ("10000000000", 5),  # P11 = 1, Q11 = 6 -> 6 -> 5
    ("00000000001", 9),  # P1 = 1, Q1 = 2 -> 2 -> 9
    ("98765432109", 3),  # 228 mod 11 = 8 -> 3
    ("00000000005", 1),  # 10 -> 1
    ("00000000006", 0),  # 12 mod 11 = 1 -> 0 (remainder <= 1)
    ("00000000000", 0),  # remainder 0 -> 0
]


@pytest.mark.parametrize("body,digit", HAND)
def test_check_digit_hand_vectors(body, digit):
    assert check_digit(body) == digit
    assert is_valid_individual_number(body + str(digit))


def test_seed_sample_is_invalid():
    # NUM-3: the seeds' sample number fails the real rule; the correct check digit is 8
    assert not is_valid_individual_number("123456789012")
    assert is_valid_individual_number("123456789018")
    assert with_check_digit("12345678901") == "123456789018"


@pytest.mark.parametrize("bad", ["", "1234567890", "123456789012", "1234567890a", "１２３４５６７８９０１", " 2345678901"])
def test_check_digit_rejects_bad_body(bad):
    with pytest.raises(ValueError, match="11 ASCII digits"):
        check_digit(bad)


def test_check_digit_rejects_non_str():
    with pytest.raises(TypeError):
        check_digit(12345678901)
    with pytest.raises(TypeError):
        is_valid_individual_number(123456789018)


@pytest.mark.parametrize("bad", ["", "12345678901", "1234567890180", "12345678901８", "12345678901x", "１２３４５６７８９０１８"])
def test_invalid_shapes(bad):
    assert not is_valid_individual_number(bad)


@given(st.text(alphabet="0123456789", min_size=11, max_size=11), st.integers(0, 9))
def test_exactly_one_check_digit_is_valid(body, digit):
    assert is_valid_individual_number(body + str(digit)) == (digit == check_digit(body))


@given(st.text(alphabet="0123456789", min_size=11, max_size=11), st.integers(0, 10), st.integers(1, 9))
def test_single_digit_change_is_detected(body, position, delta):
    # Weights 2..7 are all non-zero mod 11, so any one-digit error changes the remainder;
    # the check digit catches it unless both remainders map to 0 (remainders 0 and 1).
    number = with_check_digit(body)
    changed = list(body)
    changed[position] = str((int(changed[position]) + delta) % 10)
    changed = "".join(changed)
    if check_digit(changed) != check_digit(body):
        assert not is_valid_individual_number(changed + number[11])


SECRET = b"mynaemu TEST numbering secret"


def test_number_from_juminhyo_code_is_valid_and_deterministic():
    a = individual_number_from_juminhyo_code("12345678901", SECRET)
    assert len(a) == 12 and a.isascii() and a.isdigit()
    assert is_valid_individual_number(a)
    assert a == individual_number_from_juminhyo_code("12345678901", SECRET)


def test_number_depends_on_code_secret_and_attempt():
    base = individual_number_from_juminhyo_code("12345678901", SECRET)
    assert individual_number_from_juminhyo_code("12345678902", SECRET) != base
    assert individual_number_from_juminhyo_code("12345678901", SECRET + b"!") != base
    changed = individual_number_from_juminhyo_code("12345678901", SECRET, attempt=1)
    assert changed != base and is_valid_individual_number(changed)


def test_number_is_not_the_code_itself():
    code = "12345678901"
    assert individual_number_from_juminhyo_code(code, SECRET)[:11] != code


def test_numbers_spread_over_many_codes():
    numbers = {individual_number_from_juminhyo_code(f"{i:011d}", SECRET) for i in range(2000)}
    assert len(numbers) == 2000
    assert all(is_valid_individual_number(n) for n in numbers)
    # leading zeros are allowed and do occur (about 10 % of bodies)
    assert any(n.startswith("0") for n in numbers)


@pytest.mark.parametrize("code", ["", "1234567890", "123456789012", "1234567890x", "１２３４５６７８９０１"])
def test_number_rejects_bad_code(code):
    with pytest.raises(ValueError, match="住民票コード"):
        individual_number_from_juminhyo_code(code, SECRET)


def test_number_rejects_bad_secret_and_attempt():
    with pytest.raises(ValueError, match="secret"):
        individual_number_from_juminhyo_code("12345678901", b"")
    with pytest.raises(TypeError, match="secret"):
        individual_number_from_juminhyo_code("12345678901", "text secret")
    with pytest.raises(ValueError, match="attempt"):
        individual_number_from_juminhyo_code("12345678901", SECRET, attempt=-1)
