"""Rewrite one marked section of a markdown file (BENCHMARKS.md) for the bench reports."""
import os


def write_section(path, section, begin, end, heading=""):
    """Replace what lies between the `begin` and `end` markers in `path` (both included in
    `section`) with `section`; when the markers are absent, append `heading` and `section`.
    A missing file starts as `# Benchmarks`. Text outside the markers is left alone."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + heading + section
    with open(path, "w") as f:
        f.write(text)
