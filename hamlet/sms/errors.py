"""What went wrong with a modem, and what the installer should do — one table per code space."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Advice:
    retryable: bool  # worth trying again later (network side), or needs a person (SIM, config)
    en: str
    vi: str


# +CMS ERROR codes (3GPP TS 27.005 §3.2.5 and TS 24.011 causes) an SMS send meets in the field.
CMS: dict[int, Advice] = {
    21: Advice(False, "The network rejected the message; check the number.",
               "Mạng từ chối tin nhắn; kiểm tra lại số điện thoại."),
    28: Advice(False, "Unknown subscriber: the phone number does not exist.",
               "Số thuê bao không tồn tại; kiểm tra lại số điện thoại."),
    38: Advice(True, "Network out of order; will retry.", "Mạng đang lỗi; sẽ gửi lại."),
    41: Advice(True, "Temporary network failure; will retry.", "Mạng lỗi tạm thời; sẽ gửi lại."),
    42: Advice(True, "Network congestion; will retry.", "Mạng nghẽn; sẽ gửi lại."),
    50: Advice(False, "The SIM is not allowed to send SMS (no credit or SMS not in the plan): "
               "top up or change the SIM's plan.",
               "SIM không được gửi SMS (hết tiền hoặc gói không có SMS): "
               "nạp tiền hoặc đổi gói."),
    96: Advice(False, "The message was malformed; report this as a bug.",
               "Tin nhắn sai định dạng; hãy báo lỗi phần mềm."),
    304: Advice(False, "The modem rejected the PDU; report this as a bug.",
                "Modem từ chối PDU; hãy báo lỗi phần mềm."),
    305: Advice(False, "The modem rejected a text-mode parameter; report this as a bug.",
                "Modem từ chối tham số chế độ văn bản; hãy báo lỗi phần mềm."),
    310: Advice(False, "No SIM card: insert the SIM (contacts down, cut corner first) and restart.",
                "Không có SIM: lắp SIM (mặt tiếp xúc úp xuống) rồi khởi động lại."),
    311: Advice(False, "The SIM asks for its PIN: set the PIN in the configuration.",
                "SIM đang khóa PIN: nhập mã PIN vào cấu hình."),
    316: Advice(False, "The SIM is blocked (PUK needed): unblock it in a phone with the PUK "
                "from the SIM card holder.",
                "SIM bị khóa (cần mã PUK): mở khóa trên điện thoại bằng mã PUK in trên vỏ SIM."),
    321: Advice(True, "The modem has no message at that storage index (it lost its storage); "
                "the message is sent again.",
                "Modem không còn tin nhắn ở vị trí lưu đó (bộ nhớ bị mất); tin sẽ được gửi lại."),
    322: Advice(True, "The modem's message storage is full: the server clears what it stored "
                "when it starts; if it stays full, delete the SIM's messages (AT+CMGD=1,4).",
                "Bộ nhớ tin nhắn của modem đã đầy: máy chủ tự xóa tin đã lưu khi khởi động; "
                "nếu vẫn đầy, xóa tin trên SIM (AT+CMGD=1,4)."),
    330: Advice(False, "SMS centre number unknown: set it with AT+CSCA (Viettel +84980200030, "
                "Vinaphone +8491020005, MobiFone +8490000006... ask the operator).",
                "Không có số tổng đài tin nhắn: đặt bằng AT+CSCA (hỏi nhà mạng số SMSC)."),
    331: Advice(True, "No network service: check the antenna and coverage; will retry.",
                "Không có sóng: kiểm tra ăng-ten và vùng phủ; sẽ gửi lại."),
    332: Advice(True, "Network timeout; will retry.", "Mạng không phản hồi; sẽ gửi lại."),
    500: Advice(True, "The modem reported an unknown error; will retry.",
                "Modem báo lỗi không xác định; sẽ gửi lại."),
}  # fmt: skip

# +CME ERROR codes (TS 27.007 §9.2) from SIM and registration commands.
CME: dict[int, Advice] = {
    3: Advice(False, "The modem refused the operation.", "Modem từ chối thao tác."),
    10: Advice(False, "No SIM card: insert the SIM and restart the modem.",
               "Không có SIM: lắp SIM rồi khởi động lại modem."),
    11: Advice(False, "The SIM asks for its PIN: set the PIN in the configuration.",
               "SIM đang khóa PIN: nhập mã PIN vào cấu hình."),
    12: Advice(False, "The SIM is blocked (PUK needed): unblock it in a phone with the PUK.",
               "SIM bị khóa (cần mã PUK): mở khóa trên điện thoại bằng mã PUK."),
    13: Advice(False, "SIM failure: clean the contacts or replace the SIM.",
               "SIM hỏng: lau tiếp điểm hoặc thay SIM."),
    16: Advice(False, "Wrong SIM PIN: correct it in the configuration (three wrong tries lock "
               "the SIM).", "Sai mã PIN: sửa trong cấu hình (sai ba lần SIM sẽ bị khóa)."),
    30: Advice(True, "No network service: check the antenna; will retry.",
               "Không có sóng: kiểm tra ăng-ten; sẽ gửi lại."),
}  # fmt: skip

UNKNOWN = Advice(True, "The modem reported an error; will retry.", "Modem báo lỗi; sẽ gửi lại.")


class ModemError(Exception):
    """Base of everything the SMS driver raises; carries advice for the installer."""

    def __init__(self, message: str, advice: Advice = UNKNOWN) -> None:
        super().__init__(f"{message}: {advice.en}")
        self.advice = advice

    @property
    def retryable(self) -> bool:
        return self.advice.retryable


class ModemUnavailable(ModemError):
    """The serial port cannot be opened, or nothing answers on it."""


class SimNotReady(ModemError):
    """SIM missing, locked by PIN/PUK, or the PIN was wrong."""


class NotRegistered(ModemError):
    """The modem is not on a network (searching, denied, or no signal)."""


class CommandFailed(ModemError):
    """A command answered ERROR / +CME ERROR outside the SIM and send paths."""


class SendFailed(ModemError):
    """An SMS command (CMGS, CMGW, CMSS, CMGR) answered ``+CMS ERROR``; ``sent_parts`` parts of
    the message had gone before."""

    def __init__(self, code: int, sent_parts: int = 0) -> None:
        super().__init__(f"+CMS ERROR: {code}", CMS.get(code, UNKNOWN))
        self.code = code
        self.sent_parts = sent_parts


NO_ANSWER = Advice(
    True,
    "The modem does not answer: check its power and USB cable, and that the port and baud rate "
    "in the configuration are right.",
    "Modem không trả lời: kiểm tra nguồn, cáp USB, cổng và tốc độ baud trong cấu hình.",
)
REG_ADVICE = {
    0: Advice(True, "Not registered and not searching: check the SIM and antenna.",
              "Chưa đăng ký mạng: kiểm tra SIM và ăng-ten."),
    2: Advice(True, "Searching for a network: check the antenna and coverage; will retry.",
              "Đang tìm mạng: kiểm tra ăng-ten và vùng phủ; sẽ thử lại."),
    3: Advice(False, "Registration denied: the SIM is barred or not activated; call the operator.",
              "Mạng từ chối đăng ký: SIM bị chặn hoặc chưa kích hoạt; gọi nhà mạng."),
    4: Advice(True, "Registration state unknown; will retry.",
              "Không rõ trạng thái mạng; sẽ thử lại."),
}  # fmt: skip
