"""Word lists for Chinese legal PII: surnames, party roles, address parts (Simplified + Traditional).

Written for this project from the common-surname and court-document conventions, not taken from
any evaluation data. No heavy imports: the candidate filters and patterns are built from these.
The Traditional forms are written out rather than derived with OpenCC at import (which would cost
each worker ~0.6 CPU-s for `pipelines.chinese_script` and its converters); a test derives them
and fails when one is missing (`tests/test_pii_zh.py`).
"""

from __future__ import annotations

# Single-character surnames (the common ~400 of the Hundred Family Surnames and the census lists),
# with their Traditional forms where they differ.
SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔"
    "向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌"
    "毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦"
    "麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩"
    "明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强"
    "帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母裘亓"
    "修邰赫杭况那宿鲜印逯隆茹诸战慕危玉银亢嵇公哈湛宾戎勾茅利於呼居揭干但尉冶斯元束檀衣信展阴昝智幸奉植"
    "衡富尧闭由扬钮萧傅阎赖洪"
    # Traditional forms
    "張劉陳楊黃趙吳孫馬羅鄭謝許韓馮鄧彭曾蕭葉蘇魏呂盧薑鐘譚陸範賈韋鄒龍賀顧龔邵萬錢嚴溫莊聶魯歐關蘭紀畢"
    "單塗駱藍遊靳鮑饒牟繆車蘆婁竇費衛閔鄔邊欒隋鞏佘遲鄺匡樂冀鄢劉閻葛鍾鄺簡顏賴湯龐黎傅閆馮喬賀"
    "鄭戴聶蔣瞿鄒嚴楊葉"
    "叢烏雲儲黨農況勞區華衞厲國寧宮賓堯帥師應強戰揚時晉權來樓滿蓋盤練荊榮藺計諸談諶連鈕銀門閉聞闕闞陽陰項鮮麥齊"
)
# Surnames written the same in Traditional text although OpenCC maps the character to another
# word's form (余 -> 餘 "surplus", 岳 -> 嶽 "peak", 鲜于 -> 鮮於, 东里 -> 東裏): `tests/test_pii_zh.py`
# checks the lists above against OpenCC's s2t/s2tw/s2hk and keeps these characters as they are.
SAME_IN_TRADITIONAL = set("余干郁岳朴丰于里")
# Compound surnames (the first two characters of a name).
COMPOUND_SURNAMES = {
    "欧阳", "太史", "端木", "上官", "司马", "东方", "独孤", "南宫", "万俟", "闻人", "夏侯", "诸葛", "尉迟",
    "公羊", "赫连", "澹台", "皇甫", "宗政", "濮阳", "公冶", "太叔", "申屠", "公孙", "慕容", "仲孙", "钟离",
    "长孙", "宇文", "司徒", "鲜于", "司空", "闾丘", "子车", "亓官", "司寇", "巫马", "公西", "颛孙", "壤驷",
    "公良", "漆雕", "乐正", "宰父", "谷梁", "拓跋", "夹谷", "轩辕", "令狐", "段干", "百里", "呼延", "东郭",
    "南门", "羊舌", "微生", "公户", "公玉", "公仪", "梁丘", "公仲", "公上", "公门", "公山", "公坚", "左丘",
    "公伯", "西门", "公祖", "第五", "公乘", "贯丘", "公皙", "南荣", "东里", "东宫", "仲长", "子书", "子桑",
    "即墨", "达奚", "褚师", "吴铭", "歐陽", "司馬", "諸葛", "尉遲", "長孫", "軒轅", "東方",
    "仲孫", "仲長", "公儀", "公堅", "公孫", "公戶", "公門", "南宮", "南榮", "南門", "吳銘", "壤駟", "夾谷",
    "子書", "子車", "巫馬", "東宮", "東郭", "東里", "樂正", "澹臺", "濮陽", "獨孤", "穀梁", "聞人", "褚師",
    "西門", "貫丘", "赫連", "達奚", "鍾離", "閭丘", "顓孫", "鮮于", "萬俟",
}  # fmt: skip

# Party and participant roles in court documents, longest first so that the alternation prefers
# 被上诉人 over 上诉人 and 委托诉讼代理人 over 代理人. Traditional forms included.
ROLES = sorted(
    {
        "原告", "被告", "上诉人", "被上诉人", "申请人", "被申请人", "第三人", "委托诉讼代理人", "委托代理人",
        "诉讼代理人", "法定代理人", "指定代理人", "法定代表人", "负责人", "辩护人", "证人", "被害人", "被告人",
        "罪犯", "犯罪嫌疑人", "申诉人", "被申诉人", "再审申请人", "被执行人", "申请执行人", "复议申请人",
        "异议人", "案外人", "原审原告", "原审被告", "原审第三人", "一审原告", "一审被告", "审判长", "审判员",
        "人民陪审员", "书记员", "法官助理", "执行员", "当事人", "受害人", "嫌疑人", "报案人", "举报人",
        "监护人", "继承人", "担保人", "保证人", "借款人", "出借人", "贷款人", "承租人", "出租人", "买受人",
        "出卖人", "经办人", "联系人", "收件人", "寄件人", "户主", "配偶", "妻子", "丈夫", "之子", "之女",
        # Traditional
        "上訴人", "被上訴人", "申請人", "被申請人", "委託訴訟代理人", "委託代理人",
        "訴訟代理人", "負責人", "辯護人", "證人", "再審申請人", "被執行人", "申請執行人",
        "審判長", "審判員", "書記員", "當事人", "聯繫人",
        "監護人", "繼承人", "擔保人", "保證人", "經辦人", "一審原告", "一審被告", "人民陪審員", "出賣人",
        "原審原告", "原審第三人", "原審被告", "執行員", "報案人", "戶主", "申訴人", "異議人", "舉報人",
        "被申訴人", "複議申請人", "買受人", "貸款人",
    },
    key=len,
    reverse=True,
)  # fmt: skip

# Words after which an address follows ("住北京市…", "住所地：…", "地址：…").
ADDRESS_CUES = sorted(
    {
        "住", "住址", "住所", "住所地", "现住", "现住址", "现住所", "家住", "居住地", "经常居住地", "户籍地",
        "户籍所在地", "户籍地址", "暂住", "暂住地", "地址", "联系地址", "通讯地址", "通信地址", "送达地址",
        "收货地址", "注册地", "注册地址", "营业地址", "办公地址", "住處", "現住", "現住址", "戶籍地",
        "聯絡地址", "通訊地址", "送達地址",
    },
    key=len,
    reverse=True,
)  # fmt: skip

# Administrative units and street-level address parts.
PROVINCE_SUFFIX = "省|自治区|特别行政区|自治區|特別行政區"
CITY_SUFFIX = "市|州|盟|地区|地區"
DISTRICT_SUFFIX = "区|县|旗|區|縣"
TOWN_SUFFIX = "镇|乡|街道|鎮|鄉"
STREET_SUFFIX = "路|街|大道|大街|道|巷|弄|胡同|里|段|号院|號院"
VILLAGE_SUFFIX = "村|社区|屯|组|社區|組"
# The named provinces, regions and municipalities (so a bare 北京 / 广西 starts an address too).
PROVINCES = (
    "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|海南|四川"
    "|贵州|云南|陕西|甘肃|青海|台湾|内蒙古|广西|西藏|宁夏|新疆|香港|澳门|北京|重慶|遼寧|黑龍江|江蘇|廣東|貴州"
    "|雲南|陝西|臺灣|台灣|內蒙古|廣西|寧夏|新疆|澳門"
)

# Characters that end a name in running text (punctuation, gender/ethnicity/birth cues follow).
NAME_END = "，,。；;：:、（(）)\\s男女系于在与和及的等因经诉称於稱經與訴"
# Characters a given name (not the surname) practically never contains: function words and the
# characters that begin the phrases that follow a party's name.
NOT_IN_GIVEN_NAME = set(
    "的了是在于与及或等对向被把将从因称诉辩请求认定判决之某不未已均应该所此"
    "司院局厂店部委会处科队站校馆省县镇乡村街路号楼族"
    "將對廠從應於會樓決稱縣與處號訴該認請辯鄉鎮隊館"  # Traditional forms
)

# Frequent words that begin with a surname character and fit a name's shape (位置 = 位 + 置):
# never a person's name in running text, whatever a pattern or the model proposes.
NOT_NAMES = set(
    "位置 包括 包包 包装 高速 高度 高价 方式 方面 方向 方法 金额 金属 时间 时候 成立 成本 原因 原来 全部 全额 车辆"
    " 车主 黄金 房屋 房产 房租 申请 安全 应当 常年 明显 明确 平台 石头 白色 黄色 花园 万元 于是 向前 和解 文件 程序"
    " 钱款 李子 高兴 方便 明天 白天 江边 牛奶 马路 龙头 毛巾 田地 林地 史上 严重 严格 宁可 关于 关系 关键 管理 施工"
    " 经营 经济 乔装 邢事 解除 解决 连续 路段 路口 路边 边上 边缘 曲线 古代 元旦 司法 司机 计划 计算 商品 商店 商场"
    " 都是 都有 尚未 谈话 谈判 水平 来源 来到 相关 相应 信息 信用 明知 常住 阳台 伍元 封闭 任何 任务 任意 付款 付清"
    " 余额 余款 苏醒 支付 支持 云南 海关 海鲜 华为 宝马 王老吉"
    # Traditional forms
    " 任務 來到 來源 全額 包裝 原來 司機 商場 喬裝 嚴格 嚴重 寧可 寶馬 封閉 平臺 應當 房產"
    " 於是 明確 明顯 時候 時間 曲線 江邊 海關 海鮮 甦醒 申請 相應 相關 石頭 經濟 經營 花園"
    " 華為 華爲 萬元 解決 計劃 計算 談判 談話 路邊 車主 車輛 連續 邊上 邊緣 金屬 金額 錢款"
    " 關係 關於 關鍵 陽台 陽臺 雲南 餘款 餘額 馬路 高價 高興 黃色 黃金 龍頭".split()
)
