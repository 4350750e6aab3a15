"""Placeholder entry point until this function is implemented."""


def lambda_handler(event: dict, context: object) -> dict:
    raise NotImplementedError
