from videopool.inference.predict import MAX_FRAMES, inference_num_frames


def test_all_frames_at_inference_ignore_the_training_sample_count():
    # a model trained on 64 random frames is evaluated on every real frame
    assert inference_num_frames("all", None, 64) == MAX_FRAMES == 300
    assert inference_num_frames("uniform", None, 64) == 64
    assert inference_num_frames("random", None, None) == 300
    assert inference_num_frames("all", 120, 64) == 120
