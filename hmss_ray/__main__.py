"""``python -m hmss_ray <stage>``: the same as the ``hmss-ray`` command."""

import sys

from hmss_ray.stages import main

if __name__ == "__main__":
    sys.exit(main())
