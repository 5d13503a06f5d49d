"""Quality assurance of an sCT before planning: automatic flags, a figure per study, a PDF per
batch (:mod:`.flags`, :mod:`.figure`). Needs no CT; shows the CT and the difference when given."""
