"""Keyword rules that split tweets-sentiment into the collections it was aggregated from.

The corpus joins several crowd-labelled collections: tweets to US airlines,
about DeflateGate (NFL), about self-driving cars, about Apple, and two without
crowd agreement (Coachella, allergy medicine). A tweet belongs to a collection
when exactly one rule matches its raw text (case-insensitive); tweets matching
none or several rules belong to none. The rules are part of the versions of the
tasks and shifts that use them: change a rule, bump those versions. On the
file as pinned, they assign airline 14,577, NFL 9,395, self-driving 4,622,
Apple 3,802 tweets (and 266 to several or none, among the four and the two
others).
"""

from __future__ import annotations

import re

RULES = {
    "airline": r"@(united|americanair|usairways|southwestair|jetblue|virginamerica|delta)\b",
    "nfl": r"deflategate|deflate|patriots|brady|belichick|\bnfl\b|super ?bowl|footballs?\b|goodell",
    "self-driving": r"driverless|self[- ]driving|autonomous|google ?car|robot ?car",
    "apple": r"@apple\b|#apple\b|\baapl\b|\bapple\b|iphone|ipad|\bmac\b|itunes|ios\b",
    "coachella": r"coachella",
    "allergy": r"claritin|allegra|zyrtec|alavert|allerg",
}
_COMPILED = {name: re.compile(pattern, re.IGNORECASE) for name, pattern in RULES.items()}


def collection_of(raw_text: str) -> str | None:
    """The one collection whose rule matches ``raw_text``, or None (no rule, or several)."""
    matches = [name for name, rule in _COMPILED.items() if rule.search(raw_text)]
    return matches[0] if len(matches) == 1 else None
