"""The reference photo: finding the face, its landmarks, aligning it to the model's canonical
crop and pasting rendered faces back into the photo."""
