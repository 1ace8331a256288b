"""``python -m datasets.synthetic``: the command line of :func:`datasets.synthetic.generator.main`."""

from datasets.synthetic.generator import main

main()
