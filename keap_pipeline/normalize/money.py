"""Money, exactly: Keap's CurrencyValue (an integer in the currency's smallest unit) and amounts in major units.

A CurrencyValue ``{"amount": 12345, "currency_code": "KWD"}`` means 12.345 KWD: the amount is
divided by 10 to the power of the currency's ISO 4217 minor unit (JPY 0, USD 2, KWD 3, CLF 4),
in integer/Decimal arithmetic, never float. The minor units come from ISO 4217 List One as
published by its maintenance agency (SIX) on 2026-01-01, plus the codes withdrawn since 2023 that
an account's older records still carry. A code not in the table (or one ISO gives no minor unit:
gold XAU, the SDR XDR, test XTS, ...) is a rejection, never a guess of 2. Every stored value must
fit the columns' ``numeric(19,4)`` (at most 4 decimals, below 10^15): anything else is rejected,
never rounded.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from keap_pipeline.normalize.fields import Reject, type_name

# ISO 4217 List One (2026-01-01): alphabetic code -> minor unit, for every code that has one.
_ISO_4217: dict[int, str] = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: (
        "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD "
        "CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
        "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD "
        "LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB "
        "PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP "
        "SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XAD XCD XCG YER ZAR ZMW ZWG"
    ),
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}
# Withdrawn since 2023 (ISO 4217 List Three) but still on older orders and products: HRK (euro,
# 2023), SLL (SLE, 2024), ZWL (ZWG, 2024), ANG (XCG, 2025), CUC (2025), BGN (euro, 2026).
_WITHDRAWN: dict[str, int] = {"HRK": 2, "SLL": 2, "ZWL": 2, "ANG": 2, "CUC": 2, "BGN": 2}

MINOR_UNITS: MappingProxyType[str, int] = MappingProxyType(
    {code: digits for digits, codes in _ISO_4217.items() for code in codes.split()} | _WITHDRAWN
)



def minor_units(code: str) -> int:
    """The ISO 4217 minor unit of a currency code (JPY 0, USD 2, KWD 3, CLF 4).

    Raises:
        KeyError: not a code of the table (see the module docstring): never a guess of 2.
    """
    return MINOR_UNITS[code]


# numeric(19,4): 15 digits before the point, 4 after.
SCALE = 4
_LIMIT = Decimal(10) ** (19 - SCALE)
_QUANTUM = Decimal(1).scaleb(-SCALE)
# the arithmetic's own context (never the thread's, which a caller may have changed): room for
# 19 digits and more, and an invalid operation raises instead of giving NaN
_CONTEXT = Context(prec=40, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])
# a float's shortest repr names the JSON number exactly when the number has at most this many
# significant digits (every such decimal maps to a distinct double)
FLOAT_DIGITS = 15


def _fit(value: Decimal, field: str) -> Decimal:
    """The value as numeric(19,4) holds it (4 decimals), or Reject: more decimals, or too large."""
    if not value.is_finite():
        raise Reject(field, f"{field} is not a finite number")
    if value and value.adjusted() >= 19 - SCALE:
        raise Reject(field, f"{field} does not fit numeric(19,4) (at most 15 digits before the point)")
    try:
        stored = value.quantize(_QUANTUM, context=_CONTEXT)
    except InvalidOperation:  # pragma: no cover - excluded by the magnitude check
        raise Reject(field, f"{field} does not fit numeric(19,4)") from None
    if stored != value:
        raise Reject(field, f"{field} has more than {SCALE} decimals; numeric(19,4) would round it")
    if abs(stored) >= _LIMIT:  # pragma: no cover - excluded by the magnitude check
        raise Reject(field, f"{field} does not fit numeric(19,4) (at most 15 digits before the point)")
    return _CONTEXT.plus(stored)  # -0.0000 is 0.0000: one value, one content hash


def currency_value(value: Any, field: str, *, required: bool) -> tuple[Decimal | None, str | None]:
    """A CurrencyValue as (amount in major units, ISO code): ``{"amount": 12345, "currency_code": "KWD"}`` -> (12.345, "KWD").

    Args:
        value: the decoded CurrencyValue (or None).
        field: the Keap field (``total``, ``price``), for reasons.
        required: whether a missing CurrencyValue rejects the record; a missing one is (None, None).

    Returns:
        The exact amount (Decimal, 4 decimals) and the code.

    Raises:
        Reject: missing when required; not an object; amount missing or not an integer; code
            missing, not a string or not a currency with a minor unit; the amount does not fit
            numeric(19,4).
    """
    if value is None:
        if required:
            raise Reject(field, f"{field} is missing")
        return None, None
    if type(value) is not dict:
        raise Reject(field, f"{field} must be a CurrencyValue object, got a JSON {type_name(value)}")
    code = value.get("currency_code")
    if type(code) is not str:
        what = "missing" if code is None else f"not a string (a JSON {type_name(code)})"
        raise Reject(f"{field}.currency_code", f"{field}.currency_code is {what}")
    digits = MINOR_UNITS.get(code)  # not minor_units(): a rejection, not a KeyError
    if digits is None:
        raise Reject(
            f"{field}.currency_code",
            f"{field}.currency_code is not an ISO 4217 currency with a minor unit; its amount cannot be scaled",
        )
    amount = value.get("amount")
    if type(amount) is int:
        minor = Decimal(amount)
    elif type(amount) is Decimal and amount.is_finite() and amount == amount.to_integral_value():
        if amount.as_tuple().exponent != 0:  # 12.0 or 1E+3: an integer's value, not an integer's form
            raise Reject(f"{field}.amount", f"{field}.amount must be an integer (the smallest unit), got a fraction or exponent")
        minor = amount
    elif amount is None:
        raise Reject(f"{field}.amount", f"{field}.amount is missing")
    else:
        raise Reject(
            f"{field}.amount",
            f"{field}.amount must be an integer (the currency's smallest unit), got a JSON {type_name(amount)}"
            + (" with a fraction" if type(amount) in (float, Decimal) else ""),
        )
    return _fit(minor.scaleb(-digits, context=_CONTEXT), f"{field}.amount"), code


def major_units(value: Any, field: str) -> Decimal | None:
    """A JSON number in major units (``billing_amount: 49.99``) as an exact Decimal: null passes.

    An integer or Decimal is exact. A float (what Python's json makes of a number) is exact as
    ``Decimal(repr(float))`` when its repr has at most 15 significant digits: every decimal of
    that many digits is a distinct double, so the repr is the JSON text's value. A float with more
    digits may be a rounding of what Keap wrote, and is rejected rather than stored approximately.

    Raises:
        Reject: not a number; a float of more than 15 significant digits; NaN or infinite; more
            than 4 decimals or too large for numeric(19,4).
    """
    if value is None:
        return None
    if type(value) is int:
        exact = Decimal(value)
    elif type(value) is Decimal:
        exact = value
    elif type(value) is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise Reject(field, f"{field} is not a finite number")
        exact = Decimal(repr(value))
        if len(exact.normalize(_CONTEXT).as_tuple().digits) > FLOAT_DIGITS:  # 1000.0 has one
            raise Reject(
                field, f"{field} has more significant digits than a double holds exactly ({FLOAT_DIGITS})"
            )
    else:
        raise Reject(field, f"{field} must be a number, got a JSON {type_name(value)}")
    return _fit(exact, field)
