"""What hidden tests use to fail in words."""


class Finding(AssertionError):
    """A hidden test's failure; its message is what the student reads."""


def expect(condition, message: str) -> None:
    """Fail the test with `message` (a sentence about the concept) unless `condition` holds."""
    if not condition:
        raise Finding(message)
