"""``python -m tracklet``: the ``tracklet`` command line."""

from tracklet.cli.main import main

if __name__ == "__main__":
    main(prog_name="tracklet")
