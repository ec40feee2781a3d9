"""Where the bAbI task files are, and whether they are the official ones.

Owns the names and checksums of the 40 files of the English bAbI tasks v1.2 (Weston et al.,
2015, arXiv:1502.05698) and the lookup order for them. Does not own reading them (see `babi`)
nor the archive mechanics (see `archives`). ``sub`` is ``en`` for the 1k set and ``en-10k``
for the 10k set; a folder counts only when it holds all 40 ``qaN_<name>_{train,test}.txt``.

1. ``data_dir`` when given: the folder itself, ``data_dir/sub``, ``data_dir/babi/sub`` or
   ``data_dir/tasks_1-20_v1-2/sub``. A folder without all the files is an error listing what
   is missing; it never falls through to another copy. These are the user's own files: they
   are parsed strictly but not hashed.
2. ``$LIFELONG_DATA/babi/sub`` (``os.pathsep`` separated folders), then ``babi/sub`` in
   `locate.SYSTEM_DIRS`.
3. The download cache, through `archives.ensure_extracted`: ``tasks_1-20_v1-2.tar.gz`` is
   downloaded, checked against its SHA-256 and its ``sub`` folder extracted atomically.

Checksums: the archive's SHA-256 is the one recorded for the same URL by the Hugging Face
``datasets`` loader ``babi_qa`` (``dataset_infos.json``, 15,719,851 bytes). Files found in 2.
and 3. are checked against the per-file SHA-256 of the 1k files below (once per process, see
`locate.verify_sha256`); a damaged extracted copy in the cache is extracted again. The 10k
files have no per-file checksums here: the archive's checksum covers them in the cache, and
the strict parser of `babi` catches damage elsewhere.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lifelong.data.sources import locate
from lifelong.data.sources.archives import ensure_extracted
from lifelong.errors import DataError

ARCHIVE = "tasks_1-20_v1-2.tar.gz"
ARCHIVE_SHA256 = "0364ebde659f14d11bc21744516c5ec49d3d06cb692733f66680771244998898"
URLS = ("https://dl.fbaipublicfiles.com/babi", "http://www.thespermwhale.com/jaseweston/babi")
SUBFOLDERS = {"1k": "en", "10k": "en-10k"}

# SHA-256 of the 40 official 1k files (en/ of the archive); the task names are taken from here.
_EN_SHA256 = """
qa1_single-supporting-fact train c64ba9b1a49bbb111ffc4cd2ae4f129d25c012399dd7ade9679eea464b9afb05
qa1_single-supporting-fact test  55acf66cef2f6d798e2aa1d056e1ec8f24e910ea9215b639450574321132959b
qa2_two-supporting-facts train a4978af5bc0dc30191810e7c9949aaa6eae939ed0f6beb9fcb5f4330c2a27860
qa2_two-supporting-facts test  eff93fb9cd81ba02eb765772cf7cc269769ed44ec71cbbbc19cfb16ee5eba0f6
qa3_three-supporting-facts train a6e78019f36a02a7ed71fe6aaded0b563ff09c8deec392931801fcd9c6af4d60
qa3_three-supporting-facts test  17795c977100baf8188f386522ae301b62d6c1a13efc01b3aea781e588b4d57f
qa4_two-arg-relations train c9370502d85fa382f32d1fea2111e817f81ae9e3e79eb2924a1a5392a90417fa
qa4_two-arg-relations test  07f0ca18ddeea9eed4ba6d59e162adcb0ce44815721114b3540d92825509331e
qa5_three-arg-relations train 086cd59c3ca9677bfac3d6a22ca5853c76a5c1fbae3159c7c4a6aef759a74ec0
qa5_three-arg-relations test  ec825c1c8a76e63a31f0d7a7763cd63740e98332fa9bdf246a19068949bd5f97
qa6_yes-no-questions train 5a133115ee35d475776df703ff605d145b11effbcdbf7e74861f9d5639246a5a
qa6_yes-no-questions test  b108b16f1eccbd1c24df6dca2649079a7b2f10af7fd12d4c45a3393802de59e3
qa7_counting train dca03bd91876951c49f1c971c83c9dd55404de60201b7b6435451cf7ddb4751c
qa7_counting test  a74d1f2b91329b2bae814d41cdac2fbdfdf0328562b7d8afa9a0fa576d461e27
qa8_lists-sets train 058604df6f9440458317e8ae685d2b7b84261e1a80b4d6410a9140d16f81bf06
qa8_lists-sets test  362a653c821a580fa315a85243b4f03bfa06fa7e0269b6f8e596f8fe6911646a
qa9_simple-negation train 0c3b89921af0caea1c4059ee3f7b7f2a88869f924195a428da37820446b8c49f
qa9_simple-negation test  63590aff3f89993db409f0e9a9eb39c2a5b9d5efff99b255d800a891b0044d9f
qa10_indefinite-knowledge train 0b7691689447bab05476c5b48c44999b41e747c3978df69c18fdd87b60d6e8b3
qa10_indefinite-knowledge test  fde8f20ed0b3ba979058ed391a566af34653f23baab5b2793ee37f87ef4e88b7
qa11_basic-coreference train 9468de9a1f256f43dfda693a5d07182d21149a82b65f7c2451c64e9cff5eb138
qa11_basic-coreference test  46f3290d0158ce1285a40cd2d793f5a65f86ae5000226e165cbc85a3dfeb2f6f
qa12_conjunction train 45c2764bb2d3c8f699d35e9d9aa7958fcd96379c6e907116cdf74526c108bb25
qa12_conjunction test  6437718f8f9801ce345869e910b896836cdc6fd2d01dc7b4d2df49730703b4b1
qa13_compound-coreference train 533a391edbda743e4c99504de88b40cdded5b1d5ef454d1390f0863f748a4cc9
qa13_compound-coreference test  76a25b684f23c9cc473d8cd1465506168b9a1ec8891cfc59d0bbd87e6a064990
qa14_time-reasoning train b7561cbc624205c9c2fdbb8c843cfa8ad90edd65e78bb223fc6dea8113662df8
qa14_time-reasoning test  e3f0b19858ffbec3ed1e49076cc4d1295a89ce146c50318b862f13f202b3caf2
qa15_basic-deduction train e856ebfdcce4dd7d617c1d10f985e96a0850c0ca18e9a19a017cb710d135ed3d
qa15_basic-deduction test  32b77e117fe9acf5f94906684e3b5206de0108e646c76e1da3e022896ec7ee94
qa16_basic-induction train 20121005137e3d4b061a086eb177a456303d5742b764eb8da2d0e480b6af4d28
qa16_basic-induction test  4a11e55366f2a5a859b5a81f683ee23801bdbe71ef984e51adb976bd053e8dcf
qa17_positional-reasoning train 20083bf56ff74f0e7cf5e3e2f8c3905cdb8ef09293c3e8cf7a96ed8b45ae2277
qa17_positional-reasoning test  9e1e0250ed4ec1831757fab26c04138f81ea557ebf6976a220db879cbed04bac
qa18_size-reasoning train 18b7dcf52c9a0e87e4e7dd3d65b7e5a630de039645f52a1294197af7481d739d
qa18_size-reasoning test  d34f70eb7228a276fcb3a7854174fe562c5634f4fb454a39fc3d1ad9934be3ef
qa19_path-finding train dcb788352a56effb7bea1449128f31cc9c342c8c327b6df2caeee0e379e6ad3a
qa19_path-finding test  023e391f0d7f79c9e6ae1c46c093e2d0dbd50ab8fbd8965e037a75e3614c20e5
qa20_agents-motivations train 29580ad55fb7b4b29ba014696056cc68f8f347dac3be88470fd692ad60150398
qa20_agents-motivations test  bd3bde3788ac14ba0ae095078f7b820fbd2bfa6a34dba9d1d46a34afde9c2729
"""
_SHA256 = {f"{stem}_{split}.txt": digest
           for stem, split, digest in (line.split() for line in _EN_SHA256.split("\n") if line)}
STEMS = tuple(dict.fromkeys(name.rsplit("_", 1)[0] for name in _SHA256))  # "qa1_...", ...
TASK_NAMES = tuple(stem.split("_", 1)[1] for stem in STEMS)  # "single-supporting-fact", ...
FILE_NAMES = tuple(f"{stem}_{split}.txt" for stem in STEMS for split in ("train", "test"))


def task_file(folder: Path, task: int, split: str) -> Path:
    """The file of task `task` (1..20) and `split` ("train" or "test") in `folder`."""
    return folder / f"{STEMS[task - 1]}_{split}.txt"


def find_babi(size: str, data_dir: str | Path | None) -> Path:
    """The folder holding the 40 files of set `size` (see the module docstring).

    Raises:
        DataError: the files are in none of the places (one message listing each place and
            how to get the data), or an official file has the wrong checksum.
    """
    sub = SUBFOLDERS[size]
    get = f"the {sub}/ folder of {URLS[0]}/{ARCHIVE}"
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        looked = []
        for folder in (root, root / sub, root / "babi" / sub, root / "tasks_1-20_v1-2" / sub):
            if not (note := _missing(folder)):
                return folder  # the user's own files: parsed strictly, not hashed
            looked.append(f"  - {folder}: {note}")
        raise DataError(
            f"bAbI {size}: data_dir {root} does not hold the 40 task files. Looked in:\n"
            + "\n".join(looked) + f"\nPut the files of {get} in {root}, fix the path, or leave "
            "stream.data_dir unset to search $LIFELONG_DATA and download automatically")
    roots = [Path(p).expanduser() for p in os.environ.get("LIFELONG_DATA", "").split(os.pathsep)
             if p]
    looked = [] if roots else ["$LIFELONG_DATA: not set"]
    for folder in (root / "babi" / sub for root in [*roots, *locate.SYSTEM_DIRS]):
        if not (note := _missing(folder)):
            return _verified(folder, size, "folder")
        looked.append(f"{folder}: {note}")
    try:
        folder = _extracted(sub)
        if note := _missing(folder):
            raise DataError(f"{folder}: extracted from {ARCHIVE} but {note}; delete "
                            f"{folder.parent} to download and extract it again")
        try:
            return _verified(folder, size, "download cache")
        except DataError:  # a damaged extracted copy: extract it again from the checked archive
            shutil.rmtree(folder)
            return _verified(_extracted(sub), size, "download cache")
    except DataError as e:
        raise DataError(
            f"bAbI {size}: the task files were not found, or not intact. Looked in:\n"
            + "".join(f"  - {line}\n" for line in [*looked, str(e)]) + f"Or put the files of {get} "
            f"in DIR/babi/{sub}/ and set LIFELONG_DATA=DIR, or pass --set stream.data_dir=DIR"
        ) from None


def _extracted(sub: str) -> Path:
    return ensure_extracted("babi", ARCHIVE, URLS, ARCHIVE_SHA256, f"tasks_1-20_v1-2/{sub}")


def _missing(folder: Path) -> str:
    """Why `folder` does not hold all 40 task files ("" when it does)."""
    if not folder.is_dir():
        return "no such folder"
    missing = [n for n in FILE_NAMES if not (folder / n).is_file()]
    if len(missing) == len(FILE_NAMES):
        return f"holds none of the {len(FILE_NAMES)} task files"
    return f"missing {', '.join(missing)}" if missing else ""


def _verified(folder: Path, size: str, kind: str) -> Path:
    """`folder`, after checking the official 1k files' SHA-256 (no checksums for 10k)."""
    if size == "1k":
        for name, digest in _SHA256.items():
            locate.verify_sha256(folder / name, digest, kind)
    return folder
