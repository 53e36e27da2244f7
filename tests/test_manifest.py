"""data_manifest.yaml against the layouts and the record counts of docs/etl-formats.md §5."""

import pytest

from etlkit import manifest
from etlkit.formats import FORMATS

# Totals per dataset from docs/etl-formats.md §5 (B-type dummy records included).
TOTALS = {"ETL1": 141319, "ETL2": 52796, "ETL3": 9600, "ETL4": 6120, "ETL5": 10608,
          "ETL6": 157662, "ETL7": 33600, "ETL8B2": 3 + 152960 + 956, "ETL8G": 153916,
          "ETL9B": 5 + 607200 + 3036, "ETL9G": 607200}


@pytest.mark.parametrize("dataset", sorted(TOTALS))
def test_dataset_matches_layout_and_totals(dataset):
    info, fmt = manifest.dataset_info(dataset), FORMATS[dataset]
    assert info["family"] == fmt.family
    assert info["record_size"] == fmt.record_size
    assert tuple(info["image"]) == fmt.layout.shape
    assert info["bits"] == fmt.layout.bits
    entries = [e for e in manifest.files().values() if e.dataset == dataset]
    assert sum(e.records for e in entries) == TOTALS[dataset]


def test_per_file_class_lists_fit_the_record_counts():
    for entry in manifest.files().values():
        if entry.classes is None or not entry.writers:
            continue
        data = len(entry.classes) * entry.writers * entry.repeats
        data += entry.extra_records + (1 if entry.dataset in ("ETL8B2", "ETL9B") else 0)
        assert data - len(entry.missing) == entry.records, entry.name


def test_lookup_is_by_base_name_and_case_insensitive():
    assert manifest.lookup("/data/ETL1/ETL1C_07").dataset == "ETL1"
    assert manifest.lookup("etl8g_01").dataset == "ETL8G"
    assert manifest.lookup("ETL8G_34") is None
    assert manifest.lookup("ETL1C_09").missing == ((0xC5, 2672),)
