"""User-facing errors: one clear line naming the key, file or id and what to do."""
import sys
from collections.abc import Callable


class LancyError(Exception):
    """An error the user can fix (bad params, missing data, unreachable model)."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a LancyError becomes one line on stderr and exit status 1, without a traceback."""
    try:
        main()
    except LancyError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
