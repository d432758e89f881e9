"""Small talk: greetings, thanks, goodbyes and "who are you", told apart from questions.

A support chat opens with "Hello!" more often than with a question. Searched like a
question, a greeting matched unrelated passages and got a refusal with three of them
cited. A message that is nothing but small talk is answered without retrieval (no
sources) and in the app's persona; one that also asks something ("Hi, how do I return
this?") is a question. Closed word lists, not a model: on the labelled set in
tests/data/helpcentre every small-talk message is recognised and no question is
taken for one (bench/answers.py).
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["SmallTalk", "classify", "reply"]

SmallTalk = Literal["greeting", "thanks", "goodbye", "identity"]

_PATTERNS: dict[SmallTalk, str] = {
    "thanks": r"thanks?(?: you)?(?: (?:so|very) much)?(?: a lot)?|thx|ty|cheers|much appreciated",
    "goodbye": r"bye|goodbye|good ?bye|see you|have a (?:nice|good|great) day|that'?s all",
    "greeting": (
        r"hello|hi|hiya|hey|howdy|greetings|yo|good (?:morning|afternoon|evening|day)"
        r"|are you there|is anyone there|anybody there|how are you"
    ),
    "identity": (
        r"who are you|what are you|are you (?:a )?(?:bot|robot|human|real|an? ai)"
        r"|what can you do|what do you do|how can you help|what is your name|what's your name"
    ),
}
_KINDS: tuple[tuple[SmallTalk, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(rf"^(?:{pattern})\b", re.IGNORECASE)) for kind, pattern in _PATTERNS.items()
)
# Words that may pad small talk without making it a question ("ok thanks", "hi there").
_FILLER = re.compile(
    r"^(?:ok(?:ay)?|well|oh|and|so|great|perfect|cool|alright|there|again|everyone|all|team|folks|"
    r"assistant|bot|friend|mate|please|then|now|for (?:now|your help|the help|helping)|too|"
    r"(?:so|very) much|a lot)\b",
    re.IGNORECASE,
)
_PUNCTUATION = re.compile(r"^[\s,.;:!?'\"()\u2013\u2014-]+")
_MAX_CHARS = 80


def classify(message: str) -> SmallTalk | None:
    """The kind of small talk ``message`` is, or ``None`` if it says or asks anything else."""
    rest = message.strip()
    if len(rest) > _MAX_CHARS:
        return None
    found: SmallTalk | None = None
    while rest:
        rest = _PUNCTUATION.sub("", rest)
        if not rest:
            break
        for kind, pattern in _KINDS:
            match = pattern.match(rest)
            if match:
                # The last kind said wins: "hi, thanks!" is thanks, "ok thanks, goodbye" is goodbye.
                found = kind if found is None or kind != "greeting" else found
                rest = rest[match.end() :]
                break
        else:
            filler = _FILLER.match(rest)
            if filler is None:
                return None
            rest = rest[filler.end() :]
    return found


def _name(persona: str) -> str:
    # "You are Ada, the assistant of Acme." -> "Ada, the assistant of Acme"
    match = re.match(r"\s*you are\s+([^.!?\n]{2,80})", persona, re.IGNORECASE)
    return match.group(1).strip() if match else "a support assistant"


def reply(kind: SmallTalk, *, persona: str) -> str:
    """A short, friendly answer to small talk, in the voice the app's persona gives."""
    name = _name(persona)
    if kind == "thanks":
        return "You're welcome! Is there anything else I can help you with?"
    if kind == "goodbye":
        return "Goodbye, and thanks for getting in touch!"
    if kind == "identity":
        return (
            f"I am {name}. I answer questions from this help centre's documents and "
            "tell you where each answer comes from. What would you like to know?"
        )
    return f"Hello! I am {name}. How can I help you today?"
