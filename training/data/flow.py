"""Dense optical flow between consecutive frames (OpenCV Farneback), for the temporal loss."""

from __future__ import annotations

import cv2
import numpy as np


def optical_flow(frames_rgb: np.ndarray, stride: int = 1) -> np.ndarray:
    """frames_rgb: [T, H, W, 3] uint8 -> flow t -> t+1: [T-1, H/stride, W/stride, 2] float16.

    Values are displacements in full-resolution pixels (x, y), so a consumer that upsamples
    the field by ``stride`` can warp full-resolution frames with it directly.
    """
    h, w = frames_rgb.shape[1:3]
    # Estimating at the stored resolution is 4x cheaper at stride 2; scale back to pixels.
    grey = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (w // stride, h // stride),
                       interpolation=cv2.INTER_AREA) for f in frames_rgb]
    out = np.zeros((max(len(grey) - 1, 0), h // stride, w // stride, 2), np.float16)
    for t in range(len(grey) - 1):
        out[t] = stride * cv2.calcOpticalFlowFarneback(
            grey[t], grey[t + 1], None, pyr_scale=0.5, levels=3, winsize=13 // stride | 1,
            iterations=3, poly_n=5, poly_sigma=1.1, flags=0)
    return out


def upsample_flow(flow: np.ndarray, stride: int) -> np.ndarray:
    """[H/s, W/s, 2] -> [H, W, 2] float32 (values are already in full-resolution pixels)."""
    if stride == 1:
        return flow.astype(np.float32)
    h, w = flow.shape[:2]
    return cv2.resize(flow.astype(np.float32), (w * stride, h * stride),
                      interpolation=cv2.INTER_LINEAR)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ``warp(frames[t + 1], flow[t]) ~= frames[t]``.

    image: [H, W, C]; flow: [H, W, 2], the flow from frame t to t+1 at full resolution.
    """
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
