"""Task metrics: part-segmentation IoU (``partseg_iou``), and evaluating a model over a loader with the reported
numbers, for part segmentation (``partseg``) and classification (``classification``)."""
