"""Money as operators read it: an amount with its ad account's currency, e.g. "1,204.50 USD" (pure)."""

from __future__ import annotations

from decimal import Decimal

EMPTY = "—"
# Meta counts money in a currency's smallest unit: cents for most currencies, whole units for
# these (offset 1 in the Marketing API's "Currency codes" table).
WHOLE_UNIT_CURRENCIES = frozenset({"CLP", "COP", "CRC", "HUF", "IDR", "ISK", "JPY", "KRW", "PYG", "TWD", "VND"})


def money(amount: Decimal | None, currency: str) -> str:
    """An amount in major units, e.g. "1,234.50 USD"."""
    if amount is None:
        return EMPTY
    places = 0 if currency in WHOLE_UNIT_CURRENCIES else 2
    return f"{amount:,.{places}f} {currency}".rstrip()


def minor_units(amount: int | None, currency: str) -> str:
    """An amount in Meta's minor units (budgets), shown in major units."""
    if amount is None:
        return EMPTY
    return money(Decimal(amount) / (1 if currency in WHOLE_UNIT_CURRENCIES else 100), currency)
