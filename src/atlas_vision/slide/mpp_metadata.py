"""Microns per pixel from file metadata: OME-XML ``PhysicalSizeX``, Aperio ``MPP =``, TIFF resolution tags, dpi.

Resolution tags and dpi count only in centimetres or inches, and 72 / 96 dpi are taken as "no metadata": they are
the defaults of image software, not a scanner's pixel size.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

# µm per unit of OME's PhysicalSizeXUnit
_OME_UNITS_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4, "pm": 1e-6}
_SOFTWARE_DEFAULT_DPI = (72.0, 96.0)


def mpp_from_ome(xml: str | None) -> float | None:
    """``PhysicalSizeX`` of the first OME ``Pixels`` element, in µm (``None`` if absent or unparsable)."""
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.endswith("Pixels") and "PhysicalSizeX" in element.attrib:
            unit = element.attrib.get("PhysicalSizeXUnit", "µm")
            try:
                return float(element.attrib["PhysicalSizeX"]) * _OME_UNITS_UM.get(unit, float("nan"))
            except ValueError:
                return None
    return None


def mpp_from_aperio(description: str | None) -> float | None:
    """``MPP = 0.2520`` of an Aperio (SVS) ImageDescription."""
    match = re.search(r"\bMPP\s*=\s*([0-9.eE+-]+)", description or "")
    return float(match.group(1)) if match else None


def mpp_from_dpi(dpi: float | None, unit: str = "inch") -> float | None:
    """µm per pixel for a resolution of ``dpi`` pixels per ``unit`` ("inch" or "cm")."""
    if not dpi or dpi <= 0:
        return None
    if unit == "inch":
        if round(dpi, 3) in _SOFTWARE_DEFAULT_DPI:
            return None
        return 25400.0 / dpi
    if unit == "cm":
        return 10000.0 / dpi
    return None
