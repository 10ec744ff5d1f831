"""The visible label: a small "AI-generated" box in the bottom-right corner of every frame
(on by default; ``label: false`` in the settings or ``--no-label`` turns it off)."""

from __future__ import annotations

import cv2
import numpy as np

TEXT = "AI-generated"
FONT = cv2.FONT_HERSHEY_SIMPLEX


class Label:
    """Draws the label into frames of any size; the box is rendered once per frame size."""

    def __init__(self):
        self._shape: tuple[int, ...] = ()
        self._box = np.zeros((0, 0, 3), np.uint8)

    def _render(self, shape: tuple[int, ...]) -> None:
        scale = max(0.3, min(shape[:2]) / 640)
        thickness = 1 if scale < 0.8 else 2
        (w, h), base = cv2.getTextSize(TEXT, FONT, scale, thickness)
        pad = max(2, h // 3)
        box = np.full((h + base + 2 * pad, w + 2 * pad, 3), 24, np.uint8)
        cv2.putText(box, TEXT, (pad, pad + h), FONT, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
        self._box = box[:shape[0], :shape[1]]
        self._shape = shape

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Draws into ``frame`` (uint8 [H, W, 3]) and returns it."""
        if frame.shape != self._shape:
            self._render(frame.shape)
        h, w = self._box.shape[:2]
        frame[frame.shape[0] - h:, frame.shape[1] - w:] = self._box
        return frame
