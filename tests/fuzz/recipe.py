"""Fuzzer bytes as choices: the same input always makes the same decisions, with or without
atheris (whose FuzzedDataProvider the harness does not need, so that it runs in plain pytest)."""


class Recipe:
    """Reads choices from the front of `data`; once it is used up, every choice is 0."""

    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            return 0
        self.at += 1
        return self.data[self.at - 1]

    def below(self, n: int) -> int:
        """A number in [0, n): two bytes' worth, enough for every table here."""
        if n <= 1:
            return 0
        return ((self.byte() << 8) | self.byte()) % n

    def pick(self, options):
        return options[self.below(len(options))]

    def chance(self, in_256: int) -> bool:
        return self.byte() < in_256

    def rest(self) -> bytes:
        out = self.data[self.at:]
        self.at = len(self.data)
        return out

    def blob(self, limit: int) -> bytes:
        n = self.below(limit + 1)
        out = self.data[self.at:self.at + n]
        self.at += len(out)
        return out
