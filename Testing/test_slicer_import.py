"""Segment names, colours, terminology, appending without touching existing segments."""

import json

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: E402
import slicer  # noqa: E402
from DiffusionSegSlicerLib.SegmentationImport import (  # noqa: E402
    TERMINOLOGY_TAG,
    SegmentationImporter,
)
from DiffusionSegSlicerLib.Terminology import (  # noqa: E402
    TERMINOLOGY_FILE,
    TerminologyTable,
    normalizeTerm,
)
from DiffusionSegSlicerLib.VolumeIO import exportVolume  # noqa: E402
from slicer_test_utils import addVolume, newScene, sameRasPointSets, segmentVoxelsRas


def volumeAndLabelFile(scene, tmp_path, labels):
    volume = addVolume(scene, np.zeros(labels.shape, np.int16), spacing=(0.8, 0.8, 2.0), origin=(3, 4, 5))
    inputPath = str(tmp_path / "input.nrrd")
    exportVolume(volume, inputPath)
    image = sitk.ReadImage(inputPath)
    out = sitk.GetImageFromArray(labels.astype(np.uint8))
    out.CopyInformation(image)
    labelPath = str(tmp_path / "labels.nrrd")
    sitk.WriteImage(out, labelPath)
    return volume, labelPath


def tag(segment, name=TERMINOLOGY_TAG):
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def segmentsByName(node):
    s = node.GetSegmentation()
    return {s.GetNthSegment(i).GetName(): s.GetNthSegment(i) for i in range(s.GetNumberOfSegments())}


def test_terminology_table_matches_standard_terms():
    table = TerminologyTable()
    assert len(table) >= 20
    liverTumour = table.match("Liver Tumor")
    assert liverTumour.name == "liver tumour"
    assert "SCT^108369006^Neoplasm" in liverTumour.entry and "SCT^10200004^Liver" in liverTumour.entry
    assert "SCT^52501007^Leukocyte" in table.match("the white blood cells").entry
    assert "SCT^39607008^Lung" in table.match("lung infection").entry
    assert table.match("kidney").entry.split("~")[2] == "SCT^64033007^Kidney"
    assert table.match("banana") is None
    assert normalizeTerm("  The LIVER, ") == "liver"
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(liverTumour.entry, entry)
    assert entry.GetRegionObject().GetCodeMeaning() == "Liver"


def test_terminology_json_is_well_formed():
    data = json.loads(TERMINOLOGY_FILE.read_text(encoding="utf-8"))
    keys = [normalizeTerm(k) for t in data["terms"] for k in [t["name"], *t["synonyms"]]]
    assert len(keys) == len(set(keys)), "a synonym maps to two terms"
    for term in data["terms"]:
        assert term["category"] in data["categories"]
        assert term["type"][0] == "SCT" and term["type"][1].isdigit()
        assert len(term["color"]) == 3 and all(0 <= c <= 255 for c in term["color"])
    assert len({tuple(c) for c in data["palette"]}) == len(data["palette"])


def test_names_colours_terminology_and_unknown_prompt(tmp_path):
    scene = newScene()
    labels = np.zeros((3, 10, 12), np.uint8)
    labels[1, 2:5, 2:5] = 1
    labels[1, 6:9, 6:9] = 2
    labels[2, 1:3, 1:3] = 3
    volume, labelPath = volumeAndLabelFile(scene, tmp_path, labels)
    node, ids = SegmentationImporter().importLabelmap(
        scene, labelPath, volume, {1: "liver", 2: "liver tumour", 3: "mystery blob"}, nodeName="Result")
    assert node.GetName() == "Result" and len(ids) == 3
    segments = segmentsByName(node)
    assert set(segments) == {"liver", "liver tumour", "mystery blob"}
    assert "SCT^10200004^Liver" in tag(segments["liver"])
    assert "SCT^108369006^Neoplasm" in tag(segments["liver tumour"])
    blobTag = tag(segments["mystery blob"]) or ""   # Slicer's default entry, not one of ours
    ourTypes = {"^".join(t["type"]) for t in json.loads(TERMINOLOGY_FILE.read_text(encoding="utf-8"))["terms"]}
    assert not any(code in blobTag for code in ourTypes)
    colors = [tuple(round(c, 4) for c in s.GetColor()) for s in segments.values()]
    assert len(set(colors)) == 3
    assert np.allclose(segments["liver"].GetColor(), np.array([221, 130, 101]) / 255)


def test_appending_never_modifies_existing_segments(tmp_path):
    scene = newScene()
    labels = np.zeros((2, 10, 10), np.uint8)
    labels[0, 1:4, 1:4] = 1
    volume, labelPath = volumeAndLabelFile(scene, tmp_path, labels)
    importer = SegmentationImporter()
    node, (firstId,) = importer.importLabelmap(scene, labelPath, volume, {1: "kidney"})
    first = node.GetSegmentation().GetSegment(firstId)
    first.SetName("kidney (edited)")
    pointsBefore = segmentVoxelsRas(node, firstId)
    colorBefore = first.GetColor()
    nodesBefore = scene.GetNumberOfNodes()
    # Second run: overlapping labels, appended to the same node.
    labels[:] = 0
    labels[0, 2:6, 2:6] = 1
    labels[1, 5:8, 5:8] = 2
    sitkImage = sitk.GetImageFromArray(labels)
    sitkImage.CopyInformation(sitk.ReadImage(labelPath))
    labelPath2 = str(tmp_path / "labels2.nrrd")
    sitk.WriteImage(sitkImage, labelPath2)
    same, newIds = importer.importLabelmap(scene, labelPath2, volume, {1: "kidney", 2: "cyst"}, targetSegmentationNode=node)
    assert same is node and len(newIds) == 2 and firstId not in newIds
    assert scene.GetNumberOfNodes() == nodesBefore
    first = node.GetSegmentation().GetSegment(firstId)
    assert first.GetName() == "kidney (edited)" and first.GetColor() == colorBefore
    assert sameRasPointSets(segmentVoxelsRas(node, firstId), pointsBefore)
    names = [node.GetSegmentation().GetSegment(i).GetName() for i in newIds]
    assert sorted(names) == ["cyst", "kidney"]
    colors = {tuple(round(c, 4) for c in node.GetSegmentation().GetNthSegment(i).GetColor())
              for i in range(node.GetSegmentation().GetNumberOfSegments())}
    assert len(colors) == 3, "the second 'kidney' must not reuse the first one's colour"


def test_unreadable_result_leaves_scene_unchanged(tmp_path):
    scene = newScene()
    volume = addVolume(scene, np.zeros((2, 4, 4), np.int16))
    nodesBefore = scene.GetNumberOfNodes()
    bad = tmp_path / "broken.nrrd"
    bad.write_text("not an image")
    with pytest.raises(OSError, match="could not be read"):
        SegmentationImporter().importLabelmap(scene, str(bad), volume, {1: "liver"})
    assert scene.GetNumberOfNodes() == nodesBefore


def test_volume_under_linear_transform_keeps_segment_on_the_image(tmp_path):
    from slicer_test_utils import voxelCentersRas

    scene = newScene()
    labels = np.zeros((3, 8, 9), np.uint8)
    labels[1, 2:5, 3:6] = 1
    volume, labelPath = volumeAndLabelFile(scene, tmp_path, labels)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    import vtk
    m = vtk.vtkMatrix4x4()
    m.SetElement(0, 3, 40.0)
    m.SetElement(1, 0, 0.3)
    transform.SetMatrixTransformToParent(m)
    volume.SetAndObserveTransformNodeID(transform.GetID())
    node, (segmentId,) = SegmentationImporter().importLabelmap(scene, labelPath, volume, {1: "lesion"})
    assert node.GetTransformNodeID() == transform.GetID()
    # In the (shared) local space, the segment voxels are exactly the labelled input voxels.
    assert sameRasPointSets(segmentVoxelsRas(node, segmentId), voxelCentersRas(volume, labels == 1))


def test_term_names_for_prompt_completion():
    table = TerminologyTable()
    names = table.names()
    assert "liver tumour" in names and "white blood cell" in names
    assert all(table.match(name).name == name for name in names)
