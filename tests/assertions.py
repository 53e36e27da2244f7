"""Assertions several CLI tests share."""


def one_error_line(result, *needles):
    """A failed command as users should see it: exit 1, one `error:` line holding every
    needle, no traceback."""
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output + result.stderr
