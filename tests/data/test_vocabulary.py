"""vocabulary.csv reading (lenient: only Index and Name required) and writing."""

import pytest

from videopool.data.vocabulary import VOCABULARY_COLUMNS, read_vocabulary, write_vocabulary

YT8M_SAMPLE = (
    "Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,Vertical3,WikiDescription\n"
    '0,378135,/m/03bt1gh,Game,https://en.wikipedia.org/wiki/Game,Games,,,"A game is structured play, '
    'usually undertaken for enjoyment."\n'
    "1,280410,/m/01mw1,Video game,https://en.wikipedia.org/wiki/Video_game,Games,,,An electronic game.\n"
    "3,10,/m/x,Café,,Food,,,\n"
)


def test_reads_the_published_layout(tmp_path):
    path = tmp_path / "vocabulary.csv"
    path.write_text(YT8M_SAMPLE, encoding="utf-8")
    vocabulary = read_vocabulary(path)
    assert len(vocabulary) == 3 and vocabulary.num_classes == 4  # ids need not be contiguous
    assert vocabulary.name(1) == "Video game" and vocabulary.name(3) == "Café"
    assert vocabulary.name(2) == "class 2"
    assert vocabulary.rows[0]["WikiDescription"].startswith("A game is structured play, usually")
    assert 3 in vocabulary and 2 not in vocabulary and vocabulary.ids() == [0, 1, 3]


def test_lenient_columns_and_round_trip(tmp_path):
    path = tmp_path / "segment_vocabulary.csv"
    path.write_text("Index,KnowledgeGraphId,Name,PositiveSegmentCount\n3,/m/a,Cat,7\n1831,/m/b,Dog,2\n")
    vocabulary = read_vocabulary(path)
    assert vocabulary.names == {3: "Cat", 1831: "Dog"} and vocabulary.num_classes == 1832

    out = tmp_path / "written.csv"
    rows = [{"Index": 0, "Name": "Zero", "TrainVideoCount": 12, "Color": "red"}, {"Index": 2, "Name": "Two"}]
    assert write_vocabulary(out, rows) == 2
    header = out.read_text().splitlines()[0].split(",")
    assert header == list(VOCABULARY_COLUMNS) + ["Color"]
    again = read_vocabulary(out)
    assert again.names == {0: "Zero", 2: "Two"} and again.rows[0]["TrainVideoCount"] == "12"


@pytest.mark.parametrize("content, message", [
    ("Index,Label\n0,a\n", "must contain 'Index' and 'Name'"),
    ("Index,Name\nx,a\n", "line 2: Index 'x' is not an integer"),
    ("Index,Name\n1,a\n1,b\n", "line 3: class index 1 appears twice"),
])
def test_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_vocabulary(path)
    assert str(path) in str(info.value)
