"""A griffe extension for the API reference (mkdocs.yml): Keras's docstring sections.

The docstrings follow Keras (STYLE.md): `Call arguments:` lists a layer's call
arguments and `Example:` holds a doctest, and griffe's Google parser knows neither
title. Each is given to griffe as the Google section it is, under its own title, so
that the call arguments render as a table and the example as code.
"""

import re

import griffe

# Keras's title -> the Google section griffe parses it as (the title is kept).
SECTIONS = {"Call arguments": "Other parameters", "Example": "Examples"}
# A title line followed by an indented line: a section, as griffe reads one.
TITLE_LINE = re.compile(rf"^(?P<indent> *)(?P<title>{'|'.join(SECTIONS)}):[ \t]*$"
                        r"(?=\n(?P=indent)\s+\S)", re.MULTILINE)


class KerasSections(griffe.Extension):
    """Rewrites `Call arguments:` and `Example:` into titled Google sections."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = TITLE_LINE.sub(
                lambda match: f"{match['indent']}{SECTIONS[match['title']]}: "
                              f"{match['title']}:", obj.docstring.value)
