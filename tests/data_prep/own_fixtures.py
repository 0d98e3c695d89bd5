"""A small folder of one's own radiographs (DICOM and PNG) with a label CSV or a COCO JSON, every
problem `detect prepare` reports for such a folder present once, the expected outcome known by
construction. Shared by the data_prep tests and the train / eval / infer tests.

Images are 64 wide and 48 high (never square, so a swapped width and height shows):

    file                label(s)                          patient (source)   outcome
    dicom/d00.dcm       consolidation x2 (boxes)          PA (DICOM)         opacity, 2 boxes
    dicom/d01.dcm       normal                            PA (DICOM)         normal
    dicom/d02.dcm       abnormal                          PB (DICOM)         abnormal
    dicom/d03.dcm       opacity, no box                   PC (DICOM)         opacity, no box labels
    dicom/d04.dcm       opacity [50, 30, 20, 10]          PD                 bad: outside the 64x48 image
    dicom/d05.dcm       opacity [5, 5, -3, 10]            PE                 bad: negative width
    scans/raw001        normal (DICOM, no extension)      PF (DICOM)         normal, found by content
    png/p00.png         normal, split train, row twice    P10 (labels)       normal; one duplicate skipped
    png/p01.png         nodule (not mapped)               P11                bad: unknown label
    png/p02.png         opacity [1, 1, 10, 10], test      P12 (labels)       opacity, 1 box
    png/p03.png         normal                            - (none)           normal, own patient
    png/p04.png         normal                            - (none)           normal, own patient
    png/p05.png         normal + opacity box              P13                bad: conflicting labels
    png/missing.png     normal                            -                  bad: not found
    png/p06.png         (COCO only: no annotation)        -                  unannotated
    png/extra.png       not in the labels                 -                  image without labels
    notes.txt           not an image                      -                  junk
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from tests.data_prep.dicom_fixtures import textured_image, write_dicom

HEIGHT, WIDTH = 48, 64
LABEL_MAP = "consolidation=opacity"

CSV_ROWS = [
    "path,label,x,y,width,height,patient_id,split",
    "dicom/d00.dcm,consolidation,4,4,20,20,,",
    "dicom/d00.dcm,consolidation,30,10,16,16,,",
    "dicom/d01.dcm,normal,,,,,,",
    "dicom/d02.dcm,abnormal,,,,,,",
    "dicom/d03.dcm,opacity,,,,,,",
    "dicom/d04.dcm,opacity,50,30,20,10,,",
    "dicom/d05.dcm,opacity,5,5,-3,10,,",
    "scans/raw001,Normal,,,,,,",
    "png/p00.png,normal,,,,,P10,train",
    "png/p00.png,normal,,,,,P10,train",
    "png/p01.png,nodule,3,3,5,5,P11,",
    "png/p02.png,opacity,1,1,10,10,P12,test",
    "png/p03.png,normal,,,,,,",
    "png/p04.png,normal,,,,,,",
    "png/missing.png,normal,,,,,,",
    "png/p05.png,normal,,,,,P13,",
    "png/p05.png,opacity,2,2,5,5,P13,",
]

# image path -> (project label, boxes xyxy, has_box_labels, patient id, declared split)
EXPECTED_RECORDS = {
    "dicom/d00.dcm": ("opacity", [[4, 4, 24, 24], [30, 10, 46, 26]], True, "PA", None),
    "dicom/d01.dcm": ("normal", [], True, "PA", None),
    "dicom/d02.dcm": ("abnormal", [], True, "PB", None),
    "dicom/d03.dcm": ("opacity", [], False, "PC", None),
    "scans/raw001": ("normal", [], True, "PF", None),
    "png/p00.png": ("normal", [], True, "P10", "train"),
    "png/p02.png": ("opacity", [[1, 1, 11, 11]], True, "P12", "test"),
    "png/p03.png": ("normal", [], True, "png/p03.png", None),
    "png/p04.png": ("normal", [], True, "png/p04.png", None),
}
BAD_PATHS = ["dicom/d04.dcm", "dicom/d05.dcm", "png/missing.png", "png/p01.png", "png/p05.png"]


def _write_images(root: Path) -> None:
    (root / "dicom").mkdir(parents=True, exist_ok=True)
    (root / "png").mkdir(exist_ok=True)
    (root / "scans").mkdir(exist_ok=True)
    patients = ["PA", "PA", "PB", "PC", "PD", "PE"]
    for i, patient in enumerate(patients):
        write_dicom(
            root / "dicom" / f"d{i:02d}.dcm",
            textured_image(HEIGHT, WIDTH, seed=i),
            PatientID=patient,
            PatientSex="F" if i % 2 else "M",
            PatientAge=f"0{40 + i}Y",
            ViewPosition="PA",
        )
    write_dicom(root / "scans" / "raw001", textured_image(HEIGHT, WIDTH, seed=9), PatientID="PF")
    for i in range(7):
        cv2.imwrite(str(root / "png" / f"p{i:02d}.png"), textured_image(HEIGHT, WIDTH, seed=20 + i))
    cv2.imwrite(str(root / "png" / "extra.png"), textured_image(HEIGHT, WIDTH, seed=40))
    (root / "notes.txt").write_text("exported from the PACS on Monday\n")


def build_csv_folder(root: Path, file_name: str = "labels.csv") -> Path:
    """The folder with the label CSV as `file_name` (labels.csv: found without --labels)."""
    _write_images(root)
    (root / file_name).write_text("\n".join(CSV_ROWS) + "\n")
    return root


def coco_object() -> dict:
    """The COCO file of the same labels: ids, categories and extra image keys as tools write them."""
    categories = [
        {"id": 1, "name": "consolidation"},
        {"id": 2, "name": "opacity"},
        {"id": 3, "name": "normal"},
        {"id": 4, "name": "abnormal"},
        {"id": 7, "name": "nodule"},
    ]
    files = [
        "dicom/d00.dcm",
        "dicom/d01.dcm",
        "dicom/d02.dcm",
        "dicom/d03.dcm",
        "dicom/d04.dcm",
        "dicom/d05.dcm",
        "scans/raw001",
        "png/p00.png",
        "png/p01.png",
        "png/p02.png",
        "png/p03.png",
        "png/p04.png",
        "png/missing.png",
        "png/p05.png",
        "png/p06.png",
    ]
    images = [{"id": 100 + i, "file_name": f, "width": WIDTH, "height": HEIGHT} for i, f in enumerate(files)]
    by_file = {image["file_name"]: image for image in images}
    by_file["png/p00.png"].update(patient_id="P10", split="train")
    by_file["png/p01.png"]["patient_id"] = "P11"
    by_file["png/p02.png"].update(patient_id="P12", split="test")
    by_file["png/p05.png"].update(patient_id="P13", label="normal")
    annotations = []

    def annotate(file_name: str, category: int, bbox: list[float] | None) -> None:
        entry = {"id": len(annotations) + 1, "image_id": by_file[file_name]["id"], "category_id": category}
        if bbox is not None:
            entry["bbox"] = bbox
        annotations.append(entry)

    annotate("dicom/d00.dcm", 1, [4, 4, 20, 20])
    annotate("dicom/d00.dcm", 1, [30, 10, 16, 16])
    annotate("dicom/d01.dcm", 3, None)
    annotate("dicom/d02.dcm", 4, [0, 0, WIDTH, HEIGHT])  # a whole-image box on an image-level label: ignored
    annotate("dicom/d03.dcm", 2, None)
    annotate("dicom/d04.dcm", 2, [50, 30, 20, 10])
    annotate("dicom/d05.dcm", 2, [5, 5, -3, 10])
    annotate("scans/raw001", 3, None)
    annotate("png/p00.png", 3, None)
    annotate("png/p00.png", 3, None)  # annotation id 10: a duplicate of 9
    annotate("png/p01.png", 7, [3, 3, 5, 5])
    annotate("png/p02.png", 2, [1, 1, 10, 10])
    annotate("png/p03.png", 3, None)
    annotate("png/p04.png", 3, None)
    annotate("png/missing.png", 3, None)
    annotate("png/p05.png", 2, [2, 2, 5, 5])
    return {"images": images, "annotations": annotations, "categories": categories}


def build_coco_folder(root: Path, file_name: str = "annotations.json") -> Path:
    """The folder with the COCO file as `file_name` (annotations.json: found without --labels)."""
    _write_images(root)
    (root / file_name).write_text(json.dumps(coco_object(), indent=1))
    return root
