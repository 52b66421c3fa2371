"""A plugin without fetch(): not a plugin at all."""


def validate(target: str) -> None:
    pass
