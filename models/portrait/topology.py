"""Landmark index regions of MediaPipe's 468-point face mesh topology.

The indices are the published MediaPipe face mesh numbering (the same on every face), so anything
defined on them (the motion basis, the judge's lip gap) means the same on every photo.
Sides are the subject's: "right" is on the image's left for a frontal photo.
"""

LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CORNERS = (61, 291)
INNER_CORNERS = (78, 308)
UPPER_LIP_INNER_MID = 13
LOWER_LIP_INNER_MID = 14

RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)

FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
             109)
FOREHEAD_TOP = 10
CHIN = 152
NOSE_TIP = 1
CHEEKS = (205, 425)   # mid-cheek points, where skin colour is sampled
RIGHT_CHEEK = 234   # outermost face-oval points, used for yaw
LEFT_CHEEK = 454
RIGHT_EYE_OUTER = 33
LEFT_EYE_OUTER = 263

NUM_POINTS = 468
