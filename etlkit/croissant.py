"""croissant.json: a dataset folder as MLCommons Croissant 1.1 metadata.

Every shard is a `cr:FileObject` with its SHA-256, the splits and the class table are inline
RecordSets, the shard fields are a RecordSet whose split field references the splits, and the
raw files the shards come from are the provenance (`isBasedOn` and `prov:wasDerivedFrom`, with
their SHA-256). Croissant has no way to extract records from HDF5, so the record fields name
their HDF5 dataset and say so; README.md and manifest.json stay the source of truth, and
`check` tells whether this file still agrees with them.
"""

from . import split
from .description import HF_SPLITS, Description
from .shards import sha256

HDF5 = "application/x-hdf5"
SPLIT_URLS = {"train": "cr:TrainingSplit", "val": "cr:ValidationSplit", "test": "cr:TestSplit"}
CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/", "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/", "prov": "http://www.w3.org/ns/prov#",
    "arrayShape": "cr:arrayShape", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "containedIn": "cr:containedIn",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"}, "extract": "cr:extract",
    "field": "cr:field", "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes",
    "isArray": "cr:isArray", "isLiveDataset": "cr:isLiveDataset", "jsonPath": "cr:jsonPath",
    "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path",
    "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex",
    "repeated": "cr:repeated", "replace": "cr:replace", "samplingRate": "cr:samplingRate",
    "sdVersion": "cr:sdVersion",
    "separator": "cr:separator", "source": "cr:source", "subField": "cr:subField",
    "transform": "cr:transform", "value": "cr:value",
}
#: The shard datasets other than images: (name, Croissant type, what it holds).
COLUMNS = (
    ("labels", "cr:Int32", "Class index: label i is entry i of the classes RecordSet."),
    ("sjis", "cr:Int32", "Shift-JIS code of the character (0 for the script task's classes)."),
    ("codes", "cr:UInt16", "The raw record's own label code (JIS X 0201 byte or JIS X 0208 "
                           "word; the raw label for digits)."),
    ("sheets", "cr:Int32", "The writer's sheet number (0 for digits and letters)."),
)
NO_HDF5_EXTRACTION = (
    "Croissant 1.1 cannot extract records from HDF5: each field here is the HDF5 dataset of the "
    "same name (`column`) in every shard of the `shards` FileSet, row i of every dataset being "
    "one record, and a Croissant reader cannot load these records itself. Read them with h5py, "
    "etlkit (`etlkit.open_shards`) or Hugging Face `datasets` (`load_dataset(DIR)`); README.md "
    "(the card) and manifest.json are the source of truth, and `etlkit verify DIR` checks that "
    "this file agrees with them.")


def croissant(d: Description) -> dict:
    """The Croissant document of a described dataset folder (same folder, same document)."""
    doc = d.manifest
    side = doc.get("image_size", 64)
    shards = sorted(doc["shards"], key=lambda s: s["path"])
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": d.name,
        "description": _description(d),
        "conformsTo": "http://mlcommons.org/croissant/1.1",
        "license": d.licence.url,
        "url": d.licence.home,
        "version": doc["etlkit_version"],
        "citeAs": d.licence.cite,
        "creator": {"@type": "sc:Organization", "name": d.licence.creator},
        "keywords": ["handwriting", "character recognition", "image classification",
                     doc["task"]],
        "isBasedOn": [_source(s) for s in doc["sources"]],
        "prov:wasDerivedFrom": [{"@id": _source_id(s)} for s in doc["sources"]],
        "prov:wasGeneratedBy": {"@type": "prov:Activity", "prov:label": doc["command"],
                                "prov:wasAssociatedWith": {
                                    "@type": "prov:SoftwareAgent",
                                    "prov:label": f"etlkit {doc['etlkit_version']}"}},
        "distribution": [
            {"@type": "cr:FileObject", "@id": "manifest.json", "name": "manifest.json",
             "description": "etlkit's manifest: classes, split sizes, every shard with its "
                            "SHA-256, the raw source files, the options and command line.",
             "contentUrl": "manifest.json", "encodingFormat": "application/json",
             "sha256": sha256(d.root / "manifest.json")},
            *({"@type": "cr:FileObject", "@id": s["path"], "name": s["path"],
               "description": f"{s['count']} records of the {HF_SPLITS[s['split']]} split.",
               "contentUrl": s["path"], "encodingFormat": HDF5, "sha256": s["sha256"]}
              for s in shards),
            {"@type": "cr:FileSet", "@id": "shards", "name": "shards",
             "description": "Every shard (the FileObjects above), one split per folder.",
             "encodingFormat": HDF5, "includes": [f"{name}/*.h5" for name in split.NAMES]},
        ],
        "recordSet": [_splits(d), _classes(d), _records(side)],
    }


def check(d: Description, found) -> list[str]:
    """How a parsed croissant.json disagrees with the folder it describes: shard files and
    checksums, split sizes, classes (empty: it agrees)."""
    if not isinstance(found, dict):
        return ["not a JSON object"]
    want = croissant(d)
    problems = []
    if _shard_checksums(found) != _shard_checksums(want):
        problems.append("shard files or SHA-256 differ from manifest.json")
    for name, what in (("splits", "split sizes"), ("classes", "classes")):
        if inline_data(found, name) != inline_data(want, name):
            problems.append(f"{what} differ from manifest.json")
    return problems


def inline_data(doc: dict, record_set: str):
    """The inline `data` of one of a Croissant document's RecordSets (None if absent)."""
    sets = doc.get("recordSet")
    return next((r.get("data") for r in sets if isinstance(r, dict)
                 and r.get("@id") == record_set), None) if isinstance(sets, list) else None


def _shard_checksums(doc: dict) -> dict:
    files = doc.get("distribution")
    return {o.get("contentUrl"): o.get("sha256") for o in files
            if isinstance(o, dict) and o.get("encodingFormat") == HDF5
            and o.get("@type") == "cr:FileObject"} if isinstance(files, list) else {}


def _description(d: Description) -> str:
    doc = d.manifest
    sizes = ", ".join(f"{HF_SPLITS[k]} {v}" for k, v in doc["splits"].items())
    return (f"{doc['task']}: {doc['num_classes']} classes, {sizes} records of "
            f"{doc.get('image_size', 64)}×{doc.get('image_size', 64)} uint8 images (ink = 255) "
            f"in HDF5 shards, made by etlkit {doc['etlkit_version']}. Licence: "
            f"{d.licence.text} {NO_HDF5_EXTRACTION}")


def _source_id(source: dict) -> str:
    return f"sha256:{source['sha256']}"


def _source(source: dict) -> dict:
    return {"@type": "sc:CreativeWork", "@id": _source_id(source), "name": source["file"],
            "description": f"{source['dataset']} raw file: {source['records']} records, "
                           f"{source['used']} used.",
            "sha256": source["sha256"]}


def _splits(d: Description) -> dict:
    return {
        "@type": "cr:RecordSet", "@id": "splits", "name": "splits",
        "description": f"The splits, with their sizes. Split method: {d.split_method}.",
        "dataType": "cr:Split", "key": {"@id": "splits/name"},
        "field": [
            {"@type": "cr:Field", "@id": "splits/name", "name": "splits/name",
             "description": "The split's folder name.", "dataType": "sc:Text"},
            {"@type": "cr:Field", "@id": "splits/url", "name": "splits/url",
             "description": "What the split is for.", "dataType": "sc:URL"},
            {"@type": "cr:Field", "@id": "splits/num_examples", "name": "splits/num_examples",
             "description": "Records in the split.", "dataType": "sc:Integer"},
        ],
        "data": [{"splits/name": name, "splits/url": SPLIT_URLS[name],
                  "splits/num_examples": d.manifest["splits"][name]} for name in split.NAMES],
    }


def _classes(d: Description) -> dict:
    return {
        "@type": "cr:RecordSet", "@id": "classes", "name": "classes",
        "description": "The class table: label i is the class with index i.",
        "dataType": "sc:Enumeration", "key": {"@id": "classes/index"},
        "field": [
            {"@type": "cr:Field", "@id": "classes/index", "name": "classes/index",
             "description": "The label value.", "dataType": "sc:Integer"},
            {"@type": "cr:Field", "@id": "classes/name", "name": "classes/name",
             "description": "The character (or, for the script task, the script).",
             "dataType": "sc:Text"},
            {"@type": "cr:Field", "@id": "classes/sjis", "name": "classes/sjis",
             "description": "Its Shift-JIS code (0 for scripts).", "dataType": "sc:Integer"},
        ],
        "data": [{"classes/index": i, "classes/name": name, "classes/sjis": sjis}
                 for i, (name, sjis) in enumerate(d.classes)],
    }


def _records(side: int) -> dict:
    def field(name: str, data_type: str, description: str, **more) -> dict:
        return {"@type": "cr:Field", "@id": f"records/{name}", "name": f"records/{name}",
                "description": description, "dataType": data_type,
                "source": {"fileSet": {"@id": "shards"}, "extract": {"column": name}}, **more}

    return {
        "@type": "cr:RecordSet", "@id": "records", "name": "records",
        "description": f"One record per image, row i of every HDF5 dataset of a shard. "
                       f"{NO_HDF5_EXTRACTION}",
        "field": [
            field("images", "cr:UInt8", f"{side}×{side} image, ink = 255 ({{0, 255}} when "
                  "Otsu-binarized).", isArray=True, arrayShape=f"{side},{side}"),
            *(field(name, data_type, description,
                    **({"references": {"field": {"@id": "classes/index"}}}
                       if name == "labels" else {}))
              for name, data_type, description in COLUMNS),
            field("source", "cr:Int32", "(index into manifest.json's sources, record number "
                  "in that raw file).", isArray=True, arrayShape="2"),
            {"@type": "cr:Field", "@id": "records/split", "name": "records/split",
             "description": "The split: the shard's folder.", "dataType": "sc:Text",
             "references": {"field": {"@id": "splits/name"}},
             "source": {"fileSet": {"@id": "shards"}, "extract": {"fileProperty": "fullpath"},
                        "transform": {"regex": "^(train|val|test)/shard-\\d+\\.h5$"}}},
        ],
    }
