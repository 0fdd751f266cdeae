"""Reading the project's text inputs (configs, question and annotation files, id lists) as UTF-8."""


class NotUtf8(ValueError):
    """A text file that is not UTF-8; the message names the file and the first byte that is not."""


def read_utf8(path):
    """The text of the UTF-8 file ``path`` (a leading byte-order mark kept, as open(encoding='utf-8') keeps it)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotUtf8(f"{path}: not UTF-8 text: byte {exc.start} (0x{data[exc.start]:02x}) {exc.reason}; save the "
                      "file as UTF-8") from None
