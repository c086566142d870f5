"""The `animegan` command line (placeholder until the CLI lands)."""


def main() -> int:
    raise SystemExit("animegan: the command line is not built yet")
