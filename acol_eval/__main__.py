"""`python -m acol_eval`: the same command line as the `acol-eval` console script."""

from cli import main

if __name__ == "__main__":
    main(prog_name="acol-eval")
