"""Case ids of both SynthRAD editions: ``1BA001`` (2023: brain/pelvis) and ``1HNA001`` (2025).

:class:`PhantomId` is a :class:`~hmss_ray.data.synthrad.CaseId` whose region may also be one of
the 2025 regions (HN, TH, AB; the id spells them with two letters). The 2023 reader's ``CaseId``
is left as it is; ``make_case`` takes either, or the id as text.
"""

from __future__ import annotations

import re

from hmss_ray.data.synthrad import CaseId

# region name (its folder under Task1/) -> its code in the id
_CODE_OF = {"brain": "B", "pelvis": "P", "HN": "HN", "TH": "TH", "AB": "AB"}
_REGION_OF = {code: region for region, code in _CODE_OF.items()}
_ID_RE = re.compile(r"^(?P<task>[12])(?P<region>B|P|HN|TH|AB)(?P<centre>[A-Z])(?P<number>\d{3,})$")


class PhantomId(CaseId):
    """A case id of either edition: task, region (brain, pelvis, HN, TH, AB), centre, number."""

    @classmethod
    def parse(cls, text: str) -> PhantomId:
        match = _ID_RE.match(str(text).strip())
        if not match:
            raise ValueError(
                f"case id {text!r} does not parse: expected <task><region B|P|HN|TH|AB>"
                "<centre letter><number>, e.g. 1BA001 or 1HNA001"
            )
        region = _REGION_OF[match["region"]]
        return cls(int(match["task"]), region, match["centre"], int(match["number"]))

    @classmethod
    def of(cls, case_id: CaseId | str) -> PhantomId:
        """Any case id object (2023 or 2025 reader) or its text, as a :class:`PhantomId`."""
        return case_id if isinstance(case_id, PhantomId) else cls.parse(str(case_id))

    def __str__(self) -> str:
        return f"{self.task}{_CODE_OF[self.region]}{self.centre}{self.number:03d}"
