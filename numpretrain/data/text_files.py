"""Reading a user's text file, and cutting text into documents of sentences.

`read_text_file` is the one place a corpus file is opened: it refuses a
missing file, a directory, bytes that are not UTF-8 (saying at which byte),
and a file with no text, each with a DataError that names the file.

`split_documents` gives the shape BERT's data script expects (and the built-in
corpus generator produces): documents separated by blank lines, one sentence
per line. Ordinary prose puts many sentences on a line, so lines are also cut
after sentence-ending punctuation.
"""

import re
from pathlib import Path

from numpretrain.errors import DataError

UTF8_BOM = "\ufeff"  # some editors start UTF-8 files with it; it is not text

# Where a sentence ends: after Chinese 。！？ or ! ? (any run of them, plus
# closing quotes or brackets that follow), and after '.' only when whitespace
# follows, so that "3.14" and "numpretrain.data" stay whole. The split points
# are zero-width (lookarounds); the whitespace after a '.' is dropped by strip().
SENTENCE_END = re.compile(
    r"""(?<=[。！？!?])(?![。！？!?」』”’"'）)])"""  # after a terminator not followed by more of them or a closer
    r"""|(?<=[。！？!?][」』”’"'）)])"""  # after a terminator and one closing quote/bracket
    r"""|(?<=\.)(?=\s)"""  # after a full stop followed by whitespace
    r"""|(?<=\.[”’"'）)])(?=\s)"""  # after a full stop, a closer, then whitespace
)
BLANK_LINE = re.compile(r"\n[ \t\f\v\u3000]*\n")


def read_text_file(path):
    """Read a UTF-8 text file and return its text, line endings normalised to '\\n'.

    Raises DataError naming the file when it is missing, is a directory, is not
    valid UTF-8 (with the offset of the first bad byte), or holds no text.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a text file")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 at byte {err.start}") from None
    if text.startswith(UTF8_BOM):
        text = text[len(UTF8_BOM):]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text:
        raise DataError(f"{path}: the file is empty")
    if not text.strip():
        raise DataError(f"{path}: the file contains only whitespace")
    return text


def split_sentences(line):
    """Cut one line of text into sentences after 。！？.!? (each kept with its sentence)."""
    return [s.strip() for s in SENTENCE_END.split(line) if s.strip()]


def split_documents(text):
    """Text -> documents, each a list of sentence strings.

    Documents are separated by blank lines; inside a document each line is a
    sentence, or several when it contains sentence-ending punctuation.
    Documents with no sentence are dropped, so the result may be empty.
    """
    documents = []
    for block in BLANK_LINE.split(text.replace("\r\n", "\n")):
        sentences = [s for line in block.split("\n") for s in split_sentences(line)]
        if sentences:
            documents.append(sentences)
    return documents
